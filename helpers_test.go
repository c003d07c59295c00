package durablews_test

import (
	"errors"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/brokertest"
)

// The shared-broker helpers live in internal/brokertest, used by the
// tests of other packages too; these are their names in this package.

func amqpURL() string { return brokertest.AMQPURL() }

// brokerHost is host:port of the shared broker, as errors name it.
func brokerHost(t testing.TB) string {
	u, err := url.Parse(amqpURL())
	if err != nil {
		t.Fatalf("shared broker URL: %v", err)
	}
	return u.Host
}

func uniqueName(_ testing.TB, prefix string) string { return brokertest.UniqueName(prefix) }

type broker struct{ *brokertest.Broker }

func newBroker(t testing.TB) *broker { return &broker{brokertest.New(t)} }

func (b *broker) exchange(name, kind string) { b.T.Helper(); b.Exchange(name, kind) }
func (b *broker) deleteExchange(name string) { b.DeleteExchange(name) }
func (b *broker) queue(exchange, key string, args amqp.Table) string {
	b.T.Helper()
	return b.Queue(exchange, key, args)
}
func (b *broker) drain(q string) []amqp.Delivery { b.T.Helper(); return b.Drain(q) }
func (b *broker) count(q string) int             { b.T.Helper(); return b.Count(q) }

func newMsg(key string) *message.Message { return brokertest.NewMsg(key) }

func newPublisher(t testing.TB, cfg durablews.Config) *durablews.Publisher {
	t.Helper()
	return brokertest.NewPublisher(t, cfg)
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
