package receipts_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test ends with no goroutine of its own left: Trackers, Subscribers
// and their AMQP connections and reconnect loops are closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
