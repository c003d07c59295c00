package prommetrics_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/prommetrics"
	"github.com/durablews/durablews/receipts"
)

// Receipt batches go through the real broker to a Subscriber and a
// Tracker; the metrics say what each did: a batch, its duplicate, a
// malformed one, an expectation met and one missed.
func TestReceiptsMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("needs RabbitMQ (`make broker`); -short runs only the tests without a broker")
	}
	b := brokertest.New(t)
	exchange, queue := brokertest.UniqueName("receipts-x"), brokertest.UniqueName("receipts-q")
	t.Cleanup(func() {
		if ch, err := b.Conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(queue, false, false, false)
			_ = ch.ExchangeDelete(exchange, false, false)
			_ = ch.Close()
		}
	})
	sub, err := receipts.NewSubscriber(receipts.Config{URL: brokertest.AMQPURL(), Exchange: exchange, Queue: queue}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	recorded := make(chan receipts.Receipt, 10)
	tracker, err := receipts.NewTracker(receipts.TrackerConfig{
		Subscriber: sub, // subscribes "#" before NewTracker returns: the queue is bound
		OnReceipt:  func(r receipts.Receipt) { recorded <- r },
	}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tracker.Close() })

	reg := prometheus.NewPedanticRegistry()
	_, err = prommetrics.NewReceiptsMetrics(reg, sub, tracker, prommetrics.Options{ConstLabels: prometheus.Labels{"service": "orders"}})
	require.NoError(t, err)
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)
	assert.Zero(t, value(t, reg, "durablews_receipts_received_total"), "every series exists from the start, at zero")

	var mu sync.Mutex
	var missed []string
	tracker.ExpectUser("m1", "alice", time.Minute, func(id string) { mu.Lock(); missed = append(missed, id); mu.Unlock() })
	tracker.Expect("m-silent", 50*time.Millisecond, func(id string) { mu.Lock(); missed = append(missed, id); mu.Unlock() })

	send := func(key string, p amqp.Publishing) {
		t.Helper()
		require.NoError(t, b.Ch.PublishWithContext(brokertest.Ctx(t, 5*time.Second), exchange, key, false, false, p))
	}
	key, err := receipts.RoutingKey("alice", "tab00001")
	require.NoError(t, err)
	batch, err := receipts.NewPublishing("tab00001", []receipts.Entry{{ID: "m1", Subscription: "orders"}, {ID: "m2", Subscription: "orders"}})
	require.NoError(t, err)
	send(key, batch)
	send(key, batch) // sent again: the tracker drops both as duplicates
	send(key, amqp.Publishing{Headers: amqp.Table{receipts.Header: "1"}, Body: []byte("not json")})

	for range 2 {
		select {
		case <-recorded:
		case <-time.After(10 * time.Second):
			t.Fatal("the receipts did not reach the tracker within 10 s")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for sub.Stats().Batches < 3 || tracker.Stats().Duplicates < 2 || tracker.Stats().Missed < 1 {
		select {
		case <-ctx.Done():
			t.Fatalf("subscriber %+v, tracker %+v after 10 s", sub.Stats(), tracker.Stats())
		case <-time.After(20 * time.Millisecond):
		}
	}
	mu.Lock()
	assert.Equal(t, []string{"m-silent"}, missed)
	mu.Unlock()

	want := map[string]float64{
		"durablews_receipts_batches_total":             3,
		"durablews_receipts_received_total":            4,
		"durablews_receipts_refused_batches_total":     1,
		"durablews_receipts_recorded_total":            2,
		"durablews_receipts_duplicates_total":          2,
		"durablews_receipts_expectations_met_total":    1,
		"durablews_receipts_expectations_missed_total": 1,
		"durablews_receipts_kept":                      2,
	}
	for name, v := range want {
		assert.Equal(t, v, value(t, reg, name, "service", "orders"), name)
	}
}

// Without a Subscriber only the tracker's metrics exist; with neither,
// the call says what it needs; a second registration of the same names is
// the registry's error.
func TestReceiptsMetrics_Parts(t *testing.T) {
	tracker, err := receipts.NewTracker(receipts.TrackerConfig{}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tracker.Close() })
	tracker.Add(receipts.Receipt{MessageID: "m1", UserKey: "u", TabID: "tab00001", Subscription: "s"})

	reg := prometheus.NewPedanticRegistry()
	_, err = prommetrics.NewReceiptsMetrics(reg, nil, tracker, prommetrics.Options{Subsystem: "rcpt"})
	require.NoError(t, err)
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	assert.Equal(t, 5, n, "recorded, duplicates, met, missed, kept")
	assert.Equal(t, 1.0, value(t, reg, "durablews_rcpt_kept"))

	_, err = prommetrics.NewReceiptsMetrics(reg, nil, tracker, prommetrics.Options{Subsystem: "rcpt"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "prommetrics: register receipts metrics")

	_, err = prommetrics.NewReceiptsMetrics(nil, nil, nil, prommetrics.Options{})
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "needs a receipts.Subscriber, a receipts.Tracker or both"), err.Error())
}
