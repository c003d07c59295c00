package tabsession_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/stomptab"
	"github.com/durablews/durablews/internal/testbroker"
	"github.com/durablews/durablews/tabsession"
)

// TestQuorumTabQueueKeepsAMessageThroughCuts is the regression test of
// issue 19 item 2: RabbitMQ 4.x gives quorum queues a delivery limit of 20,
// so a message delivered to a tab whose connection then drops before the
// ack was gone after the 20th cut. A tab on a quorum queue here receives
// the message without acking and its connection is dropped, cuts times;
// the message must still be delivered after that, once, and then be gone
// only because the tab acked it. (On 4.x without x-delivery-limit -1 the
// 21st delivery never comes; on 3.10 the same argument would drop it after
// the first redelivery, which is why queueArgs depends on the version.)
func TestQuorumTabQueueKeepsAMessageThroughCuts(t *testing.T) {
	const cuts = 25
	e, cfg, _ := newOAuthEnv(t, testbroker.Options{})
	cfg.QueueType = tabsession.QueueQuorum
	c := e.withHandler(t, cfg, nil)

	s := c.open(t, "c-alice", `{}`)
	require.True(t, s.QueueCreated)
	q := e.queueInfo(t, s.Queue)
	t.Logf("RabbitMQ %s, queue type %v, arguments %v", e.node.Version().Name, q["type"], q["arguments"])
	require.Equal(t, "quorum", q["type"])
	e.publish(t, "customer.alice.order_paid", `{"user":"alice","n":1}`)

	receive := func(i int) stomptab.Message {
		t.Helper()
		tab := dialTab(t, s)
		sub, err := tab.SubscribeQueue(brokertest.Ctx(t, 10*time.Second), s.Queue, 1)
		require.NoError(t, err, "delivery %d", i)
		m, err := sub.Next(brokertest.Ctx(t, 10*time.Second))
		require.NoError(t, err, "delivery %d: the message did not come (after %d cuts)", i, i)
		assert.JSONEq(t, `{"user":"alice","n":1}`, string(m.Body), "delivery %d", i)
		assert.Equal(t, i > 0, m.Redelivered, "delivery %d: redelivered", i)
		if i == 0 {
			_, has := m.Headers["x-delivery-count"]
			assert.False(t, has, "the first delivery has no x-delivery-count: %v", m.Headers)
		} else if dc, has := m.Headers["x-delivery-count"]; has {
			// Quorum queues count the returns of the message to the queue.
			assert.Equal(t, itoa(i), dc, "delivery %d: x-delivery-count", i)
		} else {
			t.Errorf("delivery %d: a redelivery from a quorum queue carries x-delivery-count: %v", i, m.Headers)
		}
		if i < cuts {
			tab.Drop() // the ack never comes: the broker returns it to the queue
			return m
		}
		require.NoError(t, sub.Ack(m))
		// Nothing else is delivered, and the acked message is gone.
		_, err = sub.Next(brokertest.Ctx(t, time.Second))
		assert.ErrorIs(t, err, context.DeadlineExceeded, "one message, delivered once more")
		require.NoError(t, tab.Close())
		return m
	}
	var counts []string
	for i := range cuts + 1 {
		counts = append(counts, receive(i).Headers["x-delivery-count"])
	}
	t.Logf("x-delivery-count of the %d deliveries: %q", cuts+1, counts)
	assert.Equal(t, 0, e.ready(t, s.Queue), "acked: the queue is empty")
}

func itoa(i int) string { return strconv.Itoa(i) }
