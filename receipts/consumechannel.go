package receipts

import (
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
)

// consumeChannel is one AMQP channel consuming Config.Queue for a
// subscription: the deliveries it reads until the channel or its
// connection is lost. A delivery is acked or nacked on the channel it came
// on, so a delivery of a lost channel is never settled on its successor:
// the broker delivers its batch again.
type consumeChannel struct {
	ch         *amqp.Channel
	conn       *amqp.Connection // the connection ch is on
	deliveries <-chan amqp.Delivery
	lost       <-chan *amqp.Error // closed when ch or conn is closed
}

// openConsumeChannel opens a channel on conn, sets its prefetch
// (Config.PrefetchCount), declares the exchange and the queue, binds the
// queue with bindingKey and consumes it with consumer tag tag. On error
// the channel is closed.
func openConsumeChannel(conn *amqp.Connection, cfg Config, bindingKey, tag string) (*consumeChannel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	c := &consumeChannel{ch: ch, conn: conn, lost: ch.NotifyClose(make(chan *amqp.Error, 1))}
	if err := c.consume(cfg, bindingKey, tag); err != nil {
		_ = ch.Close()
		return nil, err
	}
	return c, nil
}

func (c *consumeChannel) consume(cfg Config, bindingKey, tag string) error {
	if err := c.ch.Qos(cfg.PrefetchCount, 0, false); err != nil {
		return fmt.Errorf("set prefetch %d: %w", cfg.PrefetchCount, err)
	}
	if err := declareQueue(c.ch, cfg.queue(bindingKey), amqpconn.BrokerVersion(c.conn)); err != nil {
		return err
	}
	d, err := c.ch.Consume(cfg.Queue, tag, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume queue %q: %w", cfg.Queue, err)
	}
	c.deliveries = d
	return nil
}

// isLost reports whether the channel is closed (or its connection).
func (c *consumeChannel) isLost() bool {
	select {
	case <-c.lost:
		return true
	default:
		return c.ch.IsClosed()
	}
}

// close closes the channel: the broker puts back every delivery of it not
// acked. It waits for the broker's answer, or for the connection to die
// (heartbeat) or be closed by Subscriber.Close.
func (c *consumeChannel) close() {
	if !c.isLost() {
		_ = c.ch.Close()
	}
}
