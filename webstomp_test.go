package durablews_test

// End-to-end: durablews.Publisher → RabbitMQ → Web-STOMP → a Go stand-in
// for the browser tab (internal/stomptab), which sends exactly the
// SUBSCRIBE frame the JS client in web/ sends. Needs the shared broker
// with rabbitmq_web_stomp on ws://127.0.0.1:15674/ws.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/stomptab"
)

// wsEnv is one test's slice of the shared broker: a unique durable topic
// exchange, a raw AMQP connection for inspection and cleanup, and a
// durablews.Publisher for that exchange.
type wsEnv struct {
	t    *testing.T
	conn *amqp.Connection
	ex   string
	pub  *durablews.Publisher
}

func wsStompURL() string { return brokertest.WebSTOMPURL() }

func wsManagementURL() string {
	return stomptab.ManagementURL()
}

// newWSEnv declares the exchange up front (a tab's SUBSCRIBE fails if it
// does not exist yet) and configures the publisher for it; cfg may adjust
// the publisher config.
func newWSEnv(t *testing.T, cfg func(*durablews.Config)) *wsEnv {
	t.Helper()
	conn, err := amqp.Dial(amqpURL())
	require.NoError(t, err, "needs RabbitMQ on %s", amqpURL())
	t.Cleanup(func() { _ = conn.Close() })
	e := &wsEnv{t: t, conn: conn, ex: stomptab.UniqueName("ws-e2e")}
	require.NoError(t, e.do(func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare(e.ex, amqp.ExchangeTopic, true, false, false, false, nil)
	}))
	t.Cleanup(func() {
		_ = e.do(func(ch *amqp.Channel) error { return ch.ExchangeDelete(e.ex, false, false) })
	})
	c := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: e.ex, Kind: durablews.KindTopic})
	if cfg != nil {
		cfg(&c)
	}
	e.pub, err = durablews.NewPublisher(c, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.pub.Close() })
	return e
}

func (e *wsEnv) do(f func(ch *amqp.Channel) error) error {
	ch, err := e.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return f(ch)
}

// queueName returns a fresh per-tab queue name, deleted after the test.
func (e *wsEnv) queueName(name string) string {
	q := stomptab.RandomQueueName(name)
	e.t.Cleanup(func() {
		_ = e.do(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
	})
	return q
}

// messages builds n Watermill messages for routing key key.
func wsMessages(key string, n int) []*message.Message {
	out := make([]*message.Message, n)
	for i := range out {
		m := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"key":%q,"n":%d}`, key, i))
		m.Metadata.Set(durablews.RoutingKeyMetadataKey, key)
		m.Metadata.Set("event", "test_event")
		out[i] = m
	}
	return out
}

func wsUUIDs(msgs []*message.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.UUID
	}
	return out
}

func (e *wsEnv) publish(msgs ...*message.Message) {
	e.t.Helper()
	require.NoError(e.t, e.pub.Publish(e.ex, msgs...))
}

func (e *wsEnv) inspect(q string) (amqp.Queue, bool) {
	e.t.Helper()
	return brokertest.Inspect(e.t, e.conn, q)
}

// A tab subscribes, drops off the network, 1,000 messages are published
// while it is away, and it comes back under the same queue name: every
// message arrives, in publish order, exactly once, with the headers the
// browser relies on.
func TestWebSTOMP_MessagesPublishedWhileTabIsAwayArriveInOrder(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, nil)
	spec := stomptab.Sub{Exchange: e.ex, BindingKey: "customer.42.#", QueueName: e.queueName("orders"), Prefetch: 50}

	tab := brokertest.DialTab(t, stomptab.Options{})
	brokertest.Subscribe(t, tab, spec)
	tab.Drop()

	msgs := wsMessages("customer.42.order_created", 1000)
	start := time.Now()
	e.publish(msgs...)
	t.Logf("durablews.Publisher: 1000 messages confirmed in %v", time.Since(start))
	info, ok := e.inspect(spec.QueueName)
	require.True(t, ok)
	require.Equal(t, 1000, info.Messages, "the queue holds them while the tab is away")

	tab2 := brokertest.DialTab(t, stomptab.Options{})
	sub := brokertest.Subscribe(t, tab2, spec)
	start = time.Now()
	c, err := stomptab.ReceiveN(brokertest.Ctx(t, 30*time.Second), sub, len(msgs), true)
	require.NoError(t, err)
	t.Logf("tab received and acked 1000 messages in %v", time.Since(start))
	assert.Equal(t, wsUUIDs(msgs), c.IDs())
	assert.Equal(t, stomptab.Stats{Deliveries: 1000, Unique: 1000}, c.Stats())

	m := c.Messages()[0]
	assert.Equal(t, msgs[0].UUID, m.Headers["amqp-message-id"], "MessageId carries the Watermill UUID")
	assert.Equal(t, "true", m.Headers["persistent"])
	assert.Equal(t, "application/json", m.Headers["content-type"])
	assert.Equal(t, "test_event", m.Headers["event"], "metadata reaches the browser as headers")
	assert.Equal(t, "customer.42.order_created", m.Headers[durablews.RoutingKeyMetadataKey])
	assert.Equal(t, string(msgs[0].Payload), string(m.Body))

	require.NoError(t, tab2.Close())
	info, _ = e.inspect(spec.QueueName)
	assert.Zero(t, info.Messages)
}

// Messages the tab received but did not ack before its connection went
// away come back first, in order, flagged redelivered:true.
func TestWebSTOMP_UnackedMessagesComeBackRedelivered(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, nil)
	spec := stomptab.Sub{Exchange: e.ex, BindingKey: "customer.42.#", QueueName: e.queueName("orders"), Prefetch: 10}
	ctx := brokertest.Ctx(t, 20*time.Second)
	page := stomptab.NewCollector() // survives the reconnect, like the page's memory

	tab := brokertest.DialTab(t, stomptab.Options{})
	sub := brokertest.Subscribe(t, tab, spec)
	msgs := wsMessages("customer.42.x", 5)
	e.publish(msgs...)
	for i := 0; i < 5; i++ {
		m, err := sub.Next(ctx)
		require.NoError(t, err)
		require.False(t, m.Redelivered)
		page.Add(m)
		if i < 2 {
			require.NoError(t, sub.Ack(m))
		}
	}
	require.NoError(t, tab.Sync(ctx))
	tab.Drop()

	tab2 := brokertest.DialTab(t, stomptab.Options{})
	sub2 := brokertest.Subscribe(t, tab2, spec)
	for _, want := range msgs[2:] {
		m, err := sub2.Next(ctx)
		require.NoError(t, err)
		assert.Equal(t, want.UUID, m.ID, "unacked messages return in order")
		assert.True(t, m.Redelivered, "redelivered:true on %s", m.ID)
		assert.False(t, page.Add(m), "the page has seen it already")
		require.NoError(t, sub2.Ack(m))
	}
	more := wsMessages("customer.42.x", 2)
	e.publish(more...)
	require.NoError(t, page.Receive(ctx, sub2, 7, true))
	assert.Equal(t, append(wsUUIDs(msgs), wsUUIDs(more)...), page.IDs())
	assert.Equal(t, stomptab.Stats{Deliveries: 10, Unique: 7, Duplicates: 3, Redelivered: 3}, page.Stats())
}

// Two tabs (different queue names, same binding) each get every message.
func TestWebSTOMP_TwoTabsEachGetEveryMessage(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, nil)
	var subs []*stomptab.Subscription
	for _, name := range []string{"tab-a", "tab-b"} {
		subs = append(subs, brokertest.Subscribe(t, brokertest.DialTab(t, stomptab.Options{}), stomptab.Sub{
			Exchange: e.ex, BindingKey: "customer.42.#", QueueName: e.queueName(name), Prefetch: 20,
		}))
	}
	msgs := wsMessages("customer.42.chat", 200)
	e.publish(msgs...)
	for i, sub := range subs {
		c, err := stomptab.ReceiveN(brokertest.Ctx(t, 20*time.Second), sub, len(msgs), true)
		require.NoError(t, err, "tab %d", i)
		assert.Equal(t, wsUUIDs(msgs), c.IDs(), "tab %d", i)
		assert.Zero(t, c.Stats().Duplicates)
	}
}

// A tab gone longer than its x-expires loses its queue; after that the
// publisher's messages for it are unroutable (an error with Mandatory,
// silently confirmed without), and a returning tab starts empty.
func TestWebSTOMP_QueueExpiresAfterTabIsGone(t *testing.T) {
	t.Parallel()
	const expires = 2 * time.Second
	e := newWSEnv(t, func(c *durablews.Config) { c.Mandatory = true })
	spec := stomptab.Sub{Exchange: e.ex, BindingKey: "customer.42.#", QueueName: e.queueName("orders"), Expires: expires}
	exists := func() bool {
		// Not a passive declare: that would renew the x-expires lease.
		ok, err := stomptab.QueueExistsHTTP(context.Background(), wsManagementURL(), "", spec.QueueName)
		require.NoError(t, err)
		return ok
	}

	tab := brokertest.DialTab(t, stomptab.Options{})
	brokertest.Subscribe(t, tab, spec)
	tab.Drop()
	dropped := time.Now()
	e.publish(wsMessages("customer.42.x", 3)...) // routed: the queue is still there
	for exists() {
		require.Less(t, time.Since(dropped), expires+5*time.Second, "queue never expired")
		time.Sleep(10 * time.Millisecond)
	}
	gone := time.Since(dropped)
	t.Logf("x-expires %v: queue gone %v after the tab dropped", expires, gone)
	assert.GreaterOrEqual(t, gone, expires-50*time.Millisecond)
	assert.Less(t, gone, expires+3*time.Second, "expired, but late (the broker deletes at x-expires; slack for a loaded machine)")

	lost := wsMessages("customer.42.x", 2)
	err := e.pub.Publish(e.ex, lost...)
	require.ErrorIs(t, err, durablews.ErrUnroutable, "with Mandatory the publisher notices nobody is listening")

	tab2 := brokertest.DialTab(t, stomptab.Options{})
	sub := brokertest.Subscribe(t, tab2, spec)
	info, ok := e.inspect(spec.QueueName)
	require.True(t, ok)
	assert.Zero(t, info.Messages, "a fresh, empty queue: what was queued before expiry is gone")
	fresh := wsMessages("customer.42.x", 1)
	e.publish(fresh...)
	m, err := sub.Next(brokertest.Ctx(t, 5*time.Second))
	require.NoError(t, err)
	assert.Equal(t, fresh[0].UUID, m.ID)
}

// A tab bound to customer.1.# never receives customer 2's (or customer
// 12's) messages.
func TestWebSTOMP_CustomerIsolation(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, nil)
	subs := map[string]*stomptab.Subscription{}
	for _, cust := range []string{"1", "2"} {
		subs[cust] = brokertest.Subscribe(t, brokertest.DialTab(t, stomptab.Options{}), stomptab.Sub{
			Exchange: e.ex, BindingKey: "customer." + cust + ".#", QueueName: e.queueName("customer" + cust), Prefetch: 100,
		})
	}
	owner := map[string]string{} // UUID -> customer
	want := map[string][]string{}
	var batch []*message.Message
	for i := 0; i < 200; i++ {
		for _, k := range []struct{ key, cust string }{
			{"customer.1.order_created", "1"},
			{"customer.2.order_created", "2"},
			{"customer.12.order_created", "12"},
			{"customer.2.invoice.eu", "2"},
			{"customer.1", "1"},
		} {
			m := wsMessages(k.key, 1)[0]
			batch = append(batch, m)
			owner[m.UUID] = k.cust
			want[k.cust] = append(want[k.cust], m.UUID)
		}
	}
	// Sentinels last: per-queue FIFO means anything misrouted arrives
	// before them.
	for _, cust := range []string{"1", "2"} {
		m := wsMessages("customer."+cust+".end", 1)[0]
		batch = append(batch, m)
		owner[m.UUID] = cust
		want[cust] = append(want[cust], m.UUID)
	}
	e.publish(batch...)

	for cust, sub := range subs {
		c, err := stomptab.ReceiveN(brokertest.Ctx(t, 30*time.Second), sub, len(want[cust]), true)
		require.NoError(t, err)
		foreign := 0
		for _, id := range c.IDs() {
			if owner[id] != cust {
				foreign++
			}
		}
		t.Logf("customer %s: %d messages, %d foreign", cust, c.Len(), foreign)
		assert.Zero(t, foreign)
		assert.Equal(t, want[cust], c.IDs())
		for _, m := range c.Messages() {
			rk := m.Headers[durablews.RoutingKeyMetadataKey]
			assert.True(t, rk == "customer."+cust || strings.HasPrefix(rk, "customer."+cust+"."), "routing key %s", rk)
		}
		info, _ := e.inspect(sub.ID())
		assert.Zero(t, info.Messages, "nothing left after the sentinel")
	}
}
