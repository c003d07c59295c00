package durablews_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
)

// countLogs counts captured log lines with message msg whose fields
// include want.
func countLogs(logger *watermill.CaptureLoggerAdapter, msg string, want watermill.LogFields) int {
	n := 0
	for _, entries := range logger.Captured() {
		for _, e := range entries {
			if e.Msg != msg {
				continue
			}
			match := true
			for k, v := range want {
				if e.Fields[k] != v {
					match = false
				}
			}
			if match {
				n++
			}
		}
	}
	return n
}

// An exchange deleted while the publisher runs: the publisher declares it
// again once (or, for Passive, says clearly that it does not exist), and
// callers publishing to another topic at the same time are not disturbed:
// no confirm of theirs is lost, nothing of theirs is republished.
func TestPublish_ExchangeDeletedAtRuntime(t *testing.T) {
	for _, passive := range []bool{false, true} {
		name := "declared by the publisher"
		if passive {
			name = "passive"
		}
		t.Run(name, func(t *testing.T) { testExchangeDeleted(t, passive) })
	}
}

func testExchangeDeleted(t *testing.T, passive bool) {
	b := newBroker(t)
	exA, exB := uniqueName(t, "deleted"), uniqueName(t, "other")
	b.exchange(exA, "topic")
	b.exchange(exB, "topic")
	qB := b.queue(exB, "#", nil)
	logger := watermill.NewCaptureLogger()
	p, err := durablews.NewPublisher(durablews.NewConfig(amqpURL(),
		durablews.Exchange{Name: exA, Passive: passive}, durablews.Exchange{Name: exB}), logger)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = p.Close()
		if t.Failed() {
			logger.PrintCaptured(t)
		}
	})

	var stop, deleted atomic.Bool
	var callsA, callsAfterDelete atomic.Int32
	var errsA, errsB []error
	var confirmedB []string
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			after := deleted.Load()
			if err := p.Publish(exA, newMsg("a"), newMsg("a"), newMsg("a")); err != nil {
				errsA = append(errsA, err)
			}
			callsA.Add(1)
			if after {
				callsAfterDelete.Add(1)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for !stop.Load() {
			batch := []*message.Message{newMsg("b"), newMsg("b"), newMsg("b")}
			err := p.Publish(exB, batch...)
			if err != nil {
				errsB = append(errsB, err)
			}
			ok, _ := outcome(t, batch, err)
			confirmedB = append(confirmedB, ok...)
		}
	}()
	require.Eventually(t, func() bool { return callsA.Load() >= 5 }, 10*time.Second, time.Millisecond)
	b.deleteExchange(exA)
	deleted.Store(true)
	require.Eventually(t, func() bool { return callsAfterDelete.Load() >= 5 }, 10*time.Second, time.Millisecond)
	stop.Store(true)
	wg.Wait()

	assert.Empty(t, errsB, "publishing to the other topic is not disturbed")
	seen := map[string]int{}
	for _, d := range b.drain(qB) {
		seen[d.MessageId]++
	}
	assert.Len(t, seen, len(confirmedB), "every confirmed message of the other topic is in its queue")
	for _, id := range confirmedB {
		assert.Equal(t, 1, seen[id], "message %s of the other topic arrived once", id)
	}
	assert.Zero(t, countLogs(logger, "Republishing messages whose confirm was lost", watermill.LogFields{"topic": exB}),
		"nothing of the other topic was republished")

	if !passive {
		assert.Empty(t, errsA, "the deleted exchange is declared again and publishing goes on")
		// RabbitMQ answers a declare that races the deletion without acting
		// on it, so the publisher may find the exchange gone more than once;
		// it declares it again each time, and only then.
		gone := countLogs(logger, "Exchange gone; declaring it again", watermill.LogFields{"exchange": exA})
		assert.GreaterOrEqual(t, gone, 1)
		assert.Equal(t, 1+gone, countLogs(logger, "Declared exchange", watermill.LogFields{"exchange": exA}),
			"declared at first use and once after each 404")
		t.Logf("found the exchange gone %d time(s)", gone)
		return
	}
	require.NotEmpty(t, errsA, "a passive exchange that is gone is an error")
	for _, err := range errsA {
		assert.Contains(t, err.Error(), "does not exist and Passive is set")
		assert.NotContains(t, err.Error(), "channel closed", "not retried until the channel retries run out")
	}
}
