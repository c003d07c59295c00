package durablews_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
)

// amqpURL is the shared test broker, started by `make broker`.
func amqpURL() string {
	if u := os.Getenv("DURABLEWS_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// uniqueName gives each test its own exchanges and queues on the shared
// broker, because test packages run in parallel against it.
func uniqueName(t testing.TB, prefix string) string {
	return fmt.Sprintf("%s-%s", prefix, watermill.NewShortUUID())
}

// broker is a raw AMQP connection the tests use to build topology and to
// read what the publisher wrote, independently of the code under test.
type broker struct {
	t    testing.TB
	conn *amqp.Connection
	ch   *amqp.Channel
}

func newBroker(t testing.TB) *broker {
	t.Helper()
	conn, err := amqp.Dial(amqpURL())
	require.NoError(t, err, "the tests need RabbitMQ on %s: run `make broker`", amqpURL())
	ch, err := conn.Channel()
	require.NoError(t, err)
	b := &broker{t: t, conn: conn, ch: ch}
	t.Cleanup(func() { _ = conn.Close() })
	return b
}

// exchange declares a durable exchange and deletes it after the test.
func (b *broker) exchange(name, kind string) {
	b.t.Helper()
	require.NoError(b.t, b.ch.ExchangeDeclare(name, kind, true, false, false, false, nil))
	b.t.Cleanup(func() { b.deleteExchange(name) })
}

func (b *broker) deleteExchange(name string) {
	if ch, err := b.conn.Channel(); err == nil {
		_ = ch.ExchangeDelete(name, false, false)
		_ = ch.Close()
	}
}

// queue declares a durable queue bound to exchange with key and deletes it
// after the test.
func (b *broker) queue(exchange, key string, args amqp.Table) string {
	b.t.Helper()
	q := uniqueName(b.t, "q")
	_, err := b.ch.QueueDeclare(q, true, false, false, false, args)
	require.NoError(b.t, err)
	require.NoError(b.t, b.ch.QueueBind(q, key, exchange, false, nil))
	b.t.Cleanup(func() {
		if ch, err := b.conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(q, false, false, false)
			_ = ch.Close()
		}
	})
	return q
}

// drain reads every message currently in q (acking them).
func (b *broker) drain(q string) []amqp.Delivery {
	b.t.Helper()
	var out []amqp.Delivery
	for {
		d, ok, err := b.ch.Get(q, true)
		require.NoError(b.t, err)
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// count returns the number of ready messages in q.
func (b *broker) count(q string) int {
	b.t.Helper()
	info, err := b.ch.QueueDeclarePassive(q, true, false, false, false, nil)
	require.NoError(b.t, err)
	return info.Messages
}

func newMsg(key string) *message.Message {
	m := message.NewMessage(watermill.NewUUID(), []byte(`{"n":1}`))
	if key != "" {
		m.Metadata.Set(durablews.RoutingKeyMetadataKey, key)
	}
	return m
}

func newPublisher(t testing.TB, cfg durablews.Config) *durablews.Publisher {
	t.Helper()
	p, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// cuttableDialer records the TCP connections amqp091-go opens so a test can
// cut them, like a network failure, without touching the shared broker.
type cuttableDialer struct {
	mu    sync.Mutex
	conns []net.Conn
	dials int
}

func (d *cuttableDialer) Dial(network, addr string) (net.Conn, error) {
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.dials++
	d.mu.Unlock()
	return c, nil
}

func (d *cuttableDialer) cutAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		_ = c.Close()
	}
	d.conns = nil
}

func (d *cuttableDialer) dialCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials
}

// outcome splits a Publish result into the confirmed UUIDs and the
// failures; a non-nil error that is not a *PublishError fails the test.
func outcome(t testing.TB, batch []*message.Message, err error) (confirmed []string, failed []durablews.MessageError) {
	if err == nil {
		for _, m := range batch {
			confirmed = append(confirmed, m.UUID)
		}
		return confirmed, nil
	}
	var pe *durablews.PublishError
	if !errors.As(err, &pe) {
		t.Errorf("Publish returned a non-PublishError: %v", err)
		return nil, nil
	}
	return pe.Confirmed, pe.Failed
}
