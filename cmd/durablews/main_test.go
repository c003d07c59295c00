package main

import (
	"testing"

	"go.uber.org/goleak"
)

// The CLI must leave nothing running after a command returns: no
// publisher, AMQP, STOMP or HTTP goroutine.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
