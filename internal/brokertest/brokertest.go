// Package brokertest is what the tests of several packages need from the
// shared test broker (`make broker`): its URLs, unique names, a raw AMQP
// connection to build topology and read what a publisher wrote, a
// Publisher closed at cleanup, and Go Web-STOMP tabs (internal/stomptab)
// dropped at cleanup. Only tests import it.
package brokertest

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/brokerversion"
	"github.com/durablews/durablews/internal/faultproxy"
	"github.com/durablews/durablews/internal/stomptab"
)

// AMQPURL is the shared test broker (brokerversion.SharedAMQPURL):
// $DURABLEWS_AMQP_URL, else the shared node of the RabbitMQ version
// DURABLEWS_RABBITMQ names (`make broker` starts it).
func AMQPURL() string { return brokerversion.SharedAMQPURL() }

// WebSTOMPURL is the shared broker's Web-STOMP endpoint
// ($DURABLEWS_WEB_STOMP_URL, else the selected version's node).
func WebSTOMPURL() string { return brokerversion.SharedWebSTOMPURL() }

// ManagementURL is the shared broker's management API without credentials
// (guest/guest; $DURABLEWS_MANAGEMENT_URL, else the selected version's).
func ManagementURL() string { return brokerversion.SharedManagementURL() }

// ProxiedAMQP puts a fault proxy in front of the shared broker's AMQP
// listener and returns it with the amqp:// URL that goes through it. The
// proxy is closed at cleanup.
func ProxiedAMQP(t testing.TB) (*faultproxy.Proxy, string) {
	t.Helper()
	return proxied(t, AMQPURL())
}

// ProxiedWebSTOMP puts a fault proxy in front of the shared Web-STOMP
// listener and returns it with the ws:// URL that goes through it. The
// proxy is closed at cleanup.
func ProxiedWebSTOMP(t testing.TB) (*faultproxy.Proxy, string) {
	t.Helper()
	return proxied(t, WebSTOMPURL())
}

func proxied(t testing.TB, target string) (*faultproxy.Proxy, string) {
	t.Helper()
	u, err := url.Parse(target)
	require.NoError(t, err)
	p, err := faultproxy.New(u.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	u.Host = p.Addr()
	return p, u.String()
}

// UniqueName gives each test its own exchanges and queues on the shared
// broker, because test packages run in parallel against it.
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s-%s", prefix, watermill.NewShortUUID())
}

// Broker is a raw AMQP connection the tests use to build topology and to
// read what the publisher wrote, independently of the code under test.
type Broker struct {
	T    testing.TB
	Conn *amqp.Connection
	Ch   *amqp.Channel
}

// New connects to AMQPURL and closes the connection at cleanup. It fails
// the test, saying what to run, when the broker is not there.
func New(t testing.TB) *Broker {
	t.Helper()
	conn, err := amqp.Dial(AMQPURL())
	require.NoError(t, err, "the tests need RabbitMQ on %s: run `make broker`", AMQPURL())
	ch, err := conn.Channel()
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &Broker{T: t, Conn: conn, Ch: ch}
}

// Exchange declares a durable exchange and deletes it after the test.
func (b *Broker) Exchange(name, kind string) {
	b.T.Helper()
	require.NoError(b.T, b.Ch.ExchangeDeclare(name, kind, true, false, false, false, nil))
	b.T.Cleanup(func() { b.DeleteExchange(name) })
}

// DeleteExchange deletes an exchange on a channel of its own (the test's
// may be closed by then), ignoring errors.
func (b *Broker) DeleteExchange(name string) {
	if ch, err := b.Conn.Channel(); err == nil {
		_ = ch.ExchangeDelete(name, false, false)
		_ = ch.Close()
	}
}

// Queue declares a durable queue bound to exchange with key and deletes it
// after the test.
func (b *Broker) Queue(exchange, key string, args amqp.Table) string {
	b.T.Helper()
	q := UniqueName("q")
	_, err := b.Ch.QueueDeclare(q, true, false, false, false, args)
	require.NoError(b.T, err)
	require.NoError(b.T, b.Ch.QueueBind(q, key, exchange, false, nil))
	b.T.Cleanup(func() {
		if ch, err := b.Conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(q, false, false, false)
			_ = ch.Close()
		}
	})
	return q
}

// Drain reads every message currently in q (acking them).
func (b *Broker) Drain(q string) []amqp.Delivery {
	b.T.Helper()
	var out []amqp.Delivery
	for {
		d, ok, err := b.Ch.Get(q, true)
		require.NoError(b.T, err)
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// Count returns the number of ready messages in q.
func (b *Broker) Count(q string) int {
	b.T.Helper()
	info, err := b.Ch.QueueDeclarePassive(q, true, false, false, false, nil)
	require.NoError(b.T, err)
	return info.Messages
}

// NewMsg is a small JSON message with routing key key ("" sets none).
func NewMsg(key string) *message.Message {
	m := message.NewMessage(watermill.NewUUID(), []byte(`{"n":1}`))
	if key != "" {
		m.Metadata.Set(durablews.RoutingKeyMetadataKey, key)
	}
	return m
}

// NewPublisher is a Publisher for cfg, closed at cleanup.
func NewPublisher(t testing.TB, cfg durablews.Config) *durablews.Publisher {
	t.Helper()
	p, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Ctx is a context that ends after d, or when the test ends.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// DialTab opens a Go Web-STOMP tab (opts.URL defaults to WebSTOMPURL) and
// drops it at cleanup if it is still open.
func DialTab(t testing.TB, opts stomptab.Options) *stomptab.Tab {
	t.Helper()
	if opts.URL == "" {
		opts.URL = WebSTOMPURL()
	}
	tab, err := stomptab.Dial(Ctx(t, 10*time.Second), opts)
	require.NoError(t, err, "needs Web-STOMP on %s", opts.URL)
	t.Cleanup(tab.Drop)
	return tab
}

// Subscribe subscribes tab to s and fails the test if the broker refuses.
func Subscribe(t testing.TB, tab *stomptab.Tab, s stomptab.Sub) *stomptab.Subscription {
	t.Helper()
	sub, err := tab.Subscribe(Ctx(t, 10*time.Second), s)
	require.NoError(t, err)
	return sub
}

// Inspect returns the state of queue q; ok is false when it does not
// exist.
func Inspect(t testing.TB, conn *amqp.Connection, q string) (info amqp.Queue, ok bool) {
	t.Helper()
	info, ok, err := stomptab.InspectQueue(conn, q)
	require.NoError(t, err)
	return info, ok
}
