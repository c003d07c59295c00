package receipts_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	rabbithole "github.com/michaelklishin/rabbit-hole/v3"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/receipts"
)

func TestSubscriber_OneMessagePerReceiptAndTheBatchAckedWhenAllAre(t *testing.T) {
	b := newBroker(t)
	top := newTopology(t, b)
	sub := subscriber(t, top.config())
	msgs, err := sub.Subscribe(brokertest.Ctx(t, time.Minute), "#")
	require.NoError(t, err)

	top.send(t, "0123456789abcdef", "k3xq7r2m", entry("m1"), entry("m2"),
		receipts.Entry{ID: "m3", Subscription: "prices", HandledAt: time.UnixMilli(1718000000001), Stream: "prices", Offset: 7})
	var got []*message.Message
	for range 3 {
		got = append(got, next(t, msgs, 10*time.Second))
	}
	assert.Equal(t, "m1/k3xq7r2m", got[0].UUID)
	assert.Equal(t, message.Metadata{
		receipts.MetadataMessageID: "m1", receipts.MetadataTabID: "k3xq7r2m", receipts.MetadataUserKey: "0123456789abcdef",
		receipts.MetadataSubscription: "orders", receipts.MetadataHandledAt: "2024-06-10T06:13:20.000Z",
	}, got[0].Metadata)
	r, err := receipts.FromMessage(got[2])
	require.NoError(t, err)
	assert.Equal(t, "m3", r.MessageID)
	assert.Equal(t, "0123456789abcdef", r.UserKey)
	assert.Equal(t, "prices", r.Stream)
	assert.Equal(t, int64(7), r.Offset)
	assert.WithinDuration(t, time.Now(), r.ReceivedAt, 10*time.Second)

	// Two of three acked: the delivery stays unacked; closing the
	// Subscriber puts the whole batch back.
	got[0].Ack()
	got[1].Ack()
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, sub.Close())
	assert.Equal(t, 1, top.ready(t), "the batch with an unacked receipt is back in the queue")

	sub2 := subscriber(t, top.config())
	msgs2, err := sub2.Subscribe(brokertest.Ctx(t, time.Minute), "#")
	require.NoError(t, err)
	var again []string
	for range 3 {
		m := next(t, msgs2, 10*time.Second)
		again = append(again, m.UUID)
		m.Ack()
	}
	assert.Equal(t, []string{"m1/k3xq7r2m", "m2/k3xq7r2m", "m3/k3xq7r2m"}, again, "every receipt of the batch comes again")
	time.Sleep(100 * time.Millisecond)
	require.NoError(t, sub2.Close())
	assert.Zero(t, top.ready(t), "all acked: the batch is gone")
	assert.Equal(t, receipts.Stats{Batches: 1, Receipts: 3}, sub2.Stats())
}

func TestSubscriber_NackRequeuesTheWholeBatch(t *testing.T) {
	b := newBroker(t)
	top := newTopology(t, b)
	sub := subscriber(t, top.config())
	msgs, err := sub.Subscribe(brokertest.Ctx(t, time.Minute), "#")
	require.NoError(t, err)

	top.send(t, "u", "tab1", entry("m1"), entry("m2"))
	first, second := next(t, msgs, 10*time.Second), next(t, msgs, 10*time.Second)
	first.Ack()
	second.Nack()
	var redelivered []string
	for range 2 {
		m := next(t, msgs, 10*time.Second)
		redelivered = append(redelivered, m.UUID)
		m.Ack()
	}
	assert.Equal(t, []string{"m1/tab1", "m2/tab1"}, redelivered)
	time.Sleep(100 * time.Millisecond) // let the ack reach the broker before Close
	require.NoError(t, sub.Close())
	assert.Zero(t, top.ready(t))
}

func TestSubscriber_RefusesMalformedAndForeignTabBatches(t *testing.T) {
	b := newBroker(t)
	top := newTopology(t, b)
	var mu sync.Mutex
	refused := map[string]error{}
	cfg := top.config()
	cfg.OnRefused = func(key string, err error) { mu.Lock(); refused[key] = err; mu.Unlock() }
	sub := subscriber(t, cfg)
	msgs, err := sub.Subscribe(brokertest.Ctx(t, time.Minute), "#")
	require.NoError(t, err)

	// A tab allowed to write as u.tab1 claims to be tab2 in its body.
	p, err := receipts.NewPublishing("tab2", []receipts.Entry{entry("forged")})
	require.NoError(t, err)
	top.publish(t, "u.tab1", p)
	top.publish(t, "u.tab3", amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: []byte(`{"v":1,`)})
	top.send(t, "u", "tab4", entry("good"))

	m := next(t, msgs, 10*time.Second)
	assert.Equal(t, "good/tab4", m.UUID, "refused batches are skipped, the next one is read")
	m.Ack()
	select {
	case m := <-msgs:
		t.Fatalf("unexpected message %s", m.UUID)
	case <-time.After(200 * time.Millisecond):
	}
	require.NoError(t, sub.Close())
	assert.Zero(t, top.ready(t), "refused batches are dropped, not requeued")
	assert.Equal(t, receipts.Stats{Batches: 3, Receipts: 1, Refused: 2}, sub.Stats())
	mu.Lock()
	defer mu.Unlock()
	assert.ErrorIs(t, refused["u.tab1"], receipts.ErrTabMismatch)
	assert.ErrorIs(t, refused["u.tab3"], receipts.ErrMalformed)
}

func TestSubscriber_BindingKeySelectsReceipts(t *testing.T) {
	b := newBroker(t)
	top := newTopology(t, b)
	sub := subscriber(t, top.config())
	msgs, err := sub.Subscribe(brokertest.Ctx(t, time.Minute), "alice.*")
	require.NoError(t, err)
	top.send(t, "bob", "tab1", entry("m1"))
	top.send(t, "alice", "tab2", entry("m2"))
	m := next(t, msgs, 10*time.Second)
	assert.Equal(t, "m2/tab2", m.UUID)
	m.Ack()

	require.NoError(t, sub.Close())
	_, err = sub.Subscribe(context.Background(), "#")
	assert.ErrorIs(t, err, receipts.ErrSubscriberClosed)
}

func TestSubscriber_ChannelClosesWhenContextEnds(t *testing.T) {
	b := newBroker(t)
	top := newTopology(t, b)
	sub := subscriber(t, top.config())
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := sub.Subscribe(ctx, "#")
	require.NoError(t, err)
	top.send(t, "u", "tab1", entry("m1"))
	m := next(t, msgs, 10*time.Second) // held, not acked
	cancel()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case _, ok := <-msgs:
			if !ok {
				_ = m
				require.NoError(t, sub.Close())
				assert.Equal(t, 1, top.ready(t), "the receipt not acked when the subscription ended is back in the queue")
				return
			}
		case <-deadline:
			t.Fatal("the channel did not close after the context ended")
		}
	}
}

func TestDeclareQueue_QuorumAndIdempotent(t *testing.T) {
	b := newBroker(t)
	top := newTopology(t, b)
	q := receipts.Queue{Name: top.queue, Exchange: top.exchange, BindingKeys: []string{"a.*", "b.*"}, Quorum: true}
	require.NoError(t, receipts.DeclareQueue(b.Conn, q))
	require.NoError(t, receipts.DeclareQueue(b.Conn, q), "idempotent")
	mc, err := rabbithole.NewClient(brokertest.ManagementURL(), "guest", "guest")
	require.NoError(t, err)
	info, err := mc.GetQueue("/", top.queue)
	require.NoError(t, err)
	if v := b.Conn.Properties["version"]; strings.HasPrefix(fmt.Sprint(v), "3.") {
		assert.NotContains(t, info.Arguments, "x-delivery-limit", "3.x: no delivery limit by default, and -1 would drop after one redelivery")
	} else {
		assert.EqualValues(t, -1, info.Arguments["x-delivery-limit"], "4.x: a batch delivered again and again is never dropped (default limit 20)")
	}

	top.send(t, "a", "tab1", entry("m1"))
	top.send(t, "b", "tab1", entry("m2"))
	top.send(t, "c", "tab1", entry("m3"))
	assert.Eventually(t, func() bool { return top.ready(t) == 2 }, 5*time.Second, 20*time.Millisecond, "bound with both keys only")

	ch, err := b.Conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare(top.queue, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeClassic})
	assert.ErrorContains(t, err, "PRECONDITION_FAILED", "it is a quorum queue")

	assert.ErrorContains(t, receipts.DeclareQueue(b.Conn, receipts.Queue{}), "Name is empty")
	assert.ErrorContains(t, receipts.DeclareExchange(b.Ch, "amq.topic"), "reserved")
}
