package durablews_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
)

// Publish's doc promises a *PublishError naming each message: that holds
// for an empty or unknown topic and for a closed publisher too.
func TestPublish_EveryErrorIsAPublishError(t *testing.T) {
	b := newFakeBroker(t)
	cfg := durablews.NewConfig(b.URL(), durablews.Exchange{Name: "events"})
	p, err := durablews.NewPublisher(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })

	check := func(t *testing.T, err error, reason error, text string) {
		t.Helper()
		batch := 2
		var pe *durablews.PublishError
		require.ErrorAs(t, err, &pe)
		require.Len(t, pe.Failed, batch)
		for _, f := range pe.Failed {
			assert.ErrorIs(t, f.Err, reason)
			assert.ErrorIs(t, f.Err, durablews.ErrNotSent)
			assert.ErrorContains(t, f.Err, text)
			assert.NotEmpty(t, f.UUID)
		}
		assert.Empty(t, pe.Confirmed)
	}
	msgs := func() []*message.Message { return []*message.Message{newMsg("k"), newMsg("k")} }

	t.Run("empty topic", func(t *testing.T) {
		check(t, p.Publish("", msgs()...), durablews.ErrUnknownTopic, "empty topic: pass one of the configured topics [events]")
	})
	t.Run("unknown topic", func(t *testing.T) {
		check(t, p.Publish("nope", msgs()...), durablews.ErrUnknownTopic, `unknown topic "nope": configured topics are [events]`)
	})
	t.Run("closed", func(t *testing.T) {
		require.NoError(t, p.Close())
		check(t, p.Publish("events", msgs()...), durablews.ErrPublisherClosed, "publisher is closed")
		// With no message to name, the sentinel itself.
		err := p.Publish("events")
		assert.True(t, errors.Is(err, durablews.ErrPublisherClosed) && err == durablews.ErrPublisherClosed, "%v", err)
	})
}

// The reconnect log's retry_in is the wait that follows: jittered (half to
// all of Config.Reconnect's delay), not the delay without jitter.
func TestPublisher_ReconnectLogNamesTheJitteredWait(t *testing.T) {
	b := newFakeBroker(t)
	cfg := durablews.NewConfig(b.URL(), durablews.Exchange{Name: "events"})
	const delay = 40 * time.Millisecond
	cfg.Reconnect = durablews.Backoff{Initial: delay, Max: delay, Multiplier: 1}
	logs := &retryLog{}
	p, err := durablews.NewPublisher(cfg, logs)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })

	b.close() // the broker goes away: every reconnect attempt is refused
	waitFor(t, 10*time.Second, "5 failed reconnects", func() bool { return len(logs.retryIns()) >= 5 })
	require.NoError(t, p.Close())

	exact := 0
	for _, r := range logs.retryIns() {
		d, err := time.ParseDuration(r)
		require.NoError(t, err)
		assert.GreaterOrEqual(t, d, delay/2)
		assert.LessOrEqual(t, d, delay)
		if d == delay {
			exact++
		}
	}
	// A jittered wait is exactly the delay once in 20 million.
	assert.Less(t, exact, len(logs.retryIns()), "retry_in is the delay without jitter every time")
}

// retryLog keeps the retry_in of each "Reconnect failed" line; safe for
// concurrent use (watermill's CaptureLoggerAdapter hands out its map).
type retryLog struct {
	watermill.NopLogger
	mu sync.Mutex
	in []string
}

func (l *retryLog) Error(msg string, _ error, fields watermill.LogFields) {
	if msg == "Reconnect failed" {
		l.mu.Lock()
		l.in = append(l.in, fmt.Sprint(fields["retry_in"]))
		l.mu.Unlock()
	}
}

func (l *retryLog) With(watermill.LogFields) watermill.LoggerAdapter { return l }

func (l *retryLog) retryIns() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.in)
}

// InFlight counts the messages holding a MaxInFlight slot (sent, awaiting
// their confirm), not those waiting for a free slot, as its doc says.
func TestPublisher_InFlightCountsSlotHolders(t *testing.T) {
	b := newFakeBroker(t)
	acks := make(chan func(), 16)
	b.onPublish = func(c *fakeConn, p fakePublish) {
		acks <- func() { _ = c.Ack(p.Channel, p.Tag) }
	}
	cfg := durablews.NewConfig(b.URL(), durablews.Exchange{Name: "events"})
	cfg.MaxInFlight = 1
	p, err := durablews.NewPublisher(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })

	done := make(chan error, 2)
	go func() { done <- p.Publish("events", newMsg("k")) }()
	go func() { done <- p.Publish("events", newMsg("k")) }()
	ack := <-acks // one is sent; the other caller waits for the slot
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, 1, p.InFlight(), "the waiting caller's message is not counted")
	ack()
	(<-acks)()
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	assert.Equal(t, 0, p.InFlight())
}
