package durablews_test

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/testbroker"
)

// closeBound is the longest Close may take here: a connection the broker
// blocks is dropped at once (the broker would not read connection.close),
// plus slack for a loaded machine.
const closeBound = 2 * time.Second

// within runs f and fails the test if it has not returned after d. It
// returns f's error, or nil if it did not return in time.
func within(t *testing.T, d time.Duration, what string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- f() }()
	select {
	case err := <-done:
		t.Logf("%s returned after %v: %v", what, time.Since(start).Round(time.Millisecond), err)
		return err
	case <-time.After(d):
		t.Errorf("%s did not return within %v", what, d)
		return nil
	}
}

// While a memory alarm blocks the publisher's connection, every wait is
// bounded: publishing to topics whose exchange is not declared yet (the
// declare gets no answer) returns within ConfirmTimeout, each topic on its
// own, as the right error; Close returns within its bound, also while a
// Publish is waiting.
func TestPublish_BoundedWhileTheBrokerBlocks(t *testing.T) {
	node := testbroker.Start(t, testbroker.Options{Plugins: []string{}})
	t.Cleanup(func() { _ = node.SetMemoryAlarm(false) }) // runs before the node is removed
	conn := dialNode(t, node)
	t.Cleanup(func() { _ = conn.Close() })

	cfg := durablews.NewConfig(node.AMQPURL(),
		durablews.Exchange{Name: "declared"}, durablews.Exchange{Name: "new-1"}, durablews.Exchange{Name: "new-2"})
	cfg.ConfirmTimeout = 2 * time.Second
	pub, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	require.NoError(t, err)
	require.NoError(t, pub.Publish("declared", newMsg("k")), "warm-up before the alarm")

	require.NoError(t, node.SetMemoryAlarm(true))
	// Publishing during the alarm makes the broker block the connection.
	err = within(t, cfg.ConfirmTimeout+time.Second, "Publish to the declared topic", func() error {
		return pub.Publish("declared", newMsg("k"))
	})
	require.ErrorIs(t, err, durablews.ErrConfirmTimeout)

	// Two topics not declared yet, at the same time: neither waits for the
	// other, both end as a timeout of a message never sent.
	errs := make(chan error, 2)
	for _, topic := range []string{"new-1", "new-2"} {
		go func() {
			errs <- within(t, cfg.ConfirmTimeout+time.Second, "Publish to "+topic, func() error {
				return pub.Publish(topic, newMsg("k"))
			})
		}()
	}
	for range 2 {
		err := <-errs
		require.Error(t, err)
		assert.ErrorIs(t, err, durablews.ErrConfirmTimeout)
		assert.ErrorIs(t, err, durablews.ErrNotSent)
		assert.NotErrorIs(t, err, durablews.ErrConnectionLost)
		assert.Contains(t, err.Error(), "declaring exchange")
		assert.Contains(t, err.Error(), "alarm")
	}
	within(t, closeBound, "Close", pub.Close)

	// Close while a Publish waits on the blocked connection: the Publish
	// ends at once with ErrPublisherClosed, Close within its bound.
	cfg.ConfirmTimeout = time.Minute
	pub2, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	require.NoError(t, err)
	waiting := make(chan error, 1)
	go func() { waiting <- pub2.Publish("declared", newMsg("k")) }()
	time.Sleep(time.Second) // the publish is sent and the broker blocks the connection
	within(t, closeBound, "Close during a blocked Publish", pub2.Close)
	select {
	case err := <-waiting:
		require.ErrorIs(t, err, durablews.ErrPublisherClosed)
		assert.Contains(t, err.Error(), "blocked the connection")
	case <-time.After(time.Second):
		t.Error("the waiting Publish did not end with Close")
	}
}

// A broker that stops answering (here: the network stalls) gets 5 s to
// answer connection.close; then the publisher drops the TCP connection.
// amqp091-go's own close would wait for its heartbeat timeout (30 s), and
// its CloseDeadline is moved on by every frame the heartbeater sees.
func TestPublisher_CloseIsBoundedWhenTheBrokerDoesNotAnswer(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "closebound")
	b.exchange(ex, "topic")
	proxy := brokerProxy(t)
	pub, err := durablews.NewPublisher(durablews.NewConfig(proxied(t, proxy.Addr()), durablews.Exchange{Name: ex}), watermill.NopLogger{})
	require.NoError(t, err)
	require.NoError(t, pub.Publish(ex, newMsg("k")))

	proxy.Stall(true)
	t.Cleanup(func() { proxy.Stall(false) })
	within(t, 5*time.Second+time.Second, "Close", pub.Close)
}
