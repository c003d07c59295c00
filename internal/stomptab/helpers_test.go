package stomptab_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/stomptab"
)

// broker is a raw amqp091 connection used to set up topology, publish
// with confirms and inspect/delete queues.
type broker struct {
	t    *testing.T
	conn *amqp.Connection
}

func newBroker(t *testing.T) *broker {
	t.Helper()
	conn, err := amqp.Dial(brokertest.AMQPURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &broker{t: t, conn: conn}
}

func (b *broker) do(f func(ch *amqp.Channel) error) error {
	ch, err := b.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return f(ch)
}

// exchange declares a durable topic exchange with a unique name and
// deletes it at cleanup.
func (b *broker) exchange() string {
	b.t.Helper()
	name := stomptab.UniqueName("stomptab-test")
	require.NoError(b.t, b.do(func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare(name, amqp.ExchangeTopic, true, false, false, false, nil)
	}))
	b.t.Cleanup(func() {
		_ = b.do(func(ch *amqp.Channel) error { return ch.ExchangeDelete(name, false, false) })
	})
	return name
}

// cleanupQueue deletes the queue at cleanup (it may already be gone).
func (b *broker) cleanupQueue(name string) {
	b.t.Cleanup(func() {
		_ = b.do(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(name, false, false, false); return err })
	})
}

type outMsg struct{ key, id string }

// publish sends persistent messages with MessageId set on a confirm
// channel and waits for every confirm.
func (b *broker) publish(exchange string, msgs ...outMsg) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := b.do(func(ch *amqp.Channel) error {
		if err := ch.Confirm(false); err != nil {
			return err
		}
		dcs := make([]*amqp.DeferredConfirmation, 0, len(msgs))
		for _, m := range msgs {
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, m.key, false, false, amqp.Publishing{
				MessageId:    m.id,
				DeliveryMode: amqp.Persistent,
				ContentType:  "application/json",
				Body:         fmt.Appendf(nil, `{"id":%q}`, m.id),
			})
			if err != nil {
				return err
			}
			dcs = append(dcs, dc)
		}
		for i, dc := range dcs {
			ok, err := dc.WaitContext(ctx)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("nack for %s", msgs[i].id)
			}
		}
		return nil
	})
	require.NoError(b.t, err)
}

// seq returns n messages with ids prefix-0000… on routing key key.
func seq(key, prefix string, from, n int) []outMsg {
	out := make([]outMsg, n)
	for i := range out {
		out[i] = outMsg{key: key, id: fmt.Sprintf("%s-%04d", prefix, from+i)}
	}
	return out
}

func ids(msgs []outMsg) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.id
	}
	return out
}

func (b *broker) inspect(queue string) (amqp.Queue, bool) {
	b.t.Helper()
	return brokertest.Inspect(b.t, b.conn, queue)
}

type amqpChannel = amqp.Channel

func itoa(i int) string { return fmt.Sprintf("%04d", i) }
