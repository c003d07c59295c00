package durablews

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill"
	amqp "github.com/rabbitmq/amqp091-go"
)

// exchangeChannels is what a connection set up for one exchange: its
// declaration and its Config.Channels confirm channels. Exchanges never
// share a channel: a publish to an exchange deleted under us closes its
// channel (404), and that must not cost other exchanges' callers their
// confirms.
type exchangeChannels struct {
	decl     *roundTrip // declaration in progress or done; nil: not declared
	channels []*lazyChannel
	next     atomic.Uint32 // round robin over channels
}

// exchangeChannels returns what c set up for exchange name, creating it
// empty (nothing declared or opened) on first use.
func (c *connection) exchangeChannels(name string) *exchangeChannels {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exchangeChannelsLocked(name)
}

func (c *connection) exchangeChannelsLocked(name string) *exchangeChannels {
	x := c.exchanges[name]
	if x == nil {
		x = &exchangeChannels{channels: make([]*lazyChannel, c.cfg.Channels)}
		for i := range x.channels {
			x.channels[i] = &lazyChannel{}
		}
		c.exchanges[name] = x
	}
	return x
}

// declaration returns the declaration of e on this connection: done if it
// succeeded before, else in progress (started now if needed). A failed
// declaration is forgotten, so the next caller tries again.
func (c *connection) declaration(topic string, e Exchange) *roundTrip {
	c.mu.Lock()
	defer c.mu.Unlock()
	x := c.exchangeChannelsLocked(e.Name)
	if x.decl != nil {
		return x.decl
	}
	var r *roundTrip
	r = c.startRoundTripLocked(func() error {
		err := c.declare(topic, e)
		if err != nil {
			c.mu.Lock() // also orders this read of r after its assignment
			if x.decl == r {
				x.decl = nil
			}
			c.mu.Unlock()
		}
		return err
	})
	if !c.closed {
		x.decl = r
	}
	return r
}

// forget drops decl, the declaration of exchange name, e.g. after a
// publish found the exchange gone (404), so the next publish declares or
// checks it again. A newer declaration (another caller saw the 404 first)
// is kept.
func (c *connection) forget(name string, decl *roundTrip) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if x := c.exchangeChannelsLocked(name); x.decl == decl {
		x.decl = nil
	}
}

// declare makes sure exchange e exists: declared (durable) or, when
// Passive, checked. It uses a channel of its own: a failed declare closes
// its channel.
func (c *connection) declare(topic string, e Exchange) error {
	ch, err := c.amqpConn.Channel()
	if err != nil {
		return fmt.Errorf("open a channel to declare exchange %q: %w", e.Name, err)
	}
	if e.Passive {
		err = ch.ExchangeDeclarePassive(e.Name, e.Kind, true, false, false, false, nil)
	} else {
		err = ch.ExchangeDeclare(e.Name, e.Kind, true, false, false, false, nil)
	}
	if err == nil {
		_ = ch.Close()
		c.logger.Debug("Declared exchange", watermill.LogFields{"topic": topic, "exchange": e.Name, "passive": e.Passive})
		return nil
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case amqp.NotFound:
			return fmt.Errorf("exchange %q for topic %q does not exist and Passive is set: create it or set Passive: false: %w", e.Name, topic, err)
		case amqp.PreconditionFailed:
			return fmt.Errorf("exchange %q for topic %q exists with other settings than durable %s: delete it or change Exchange.Kind: %w", e.Name, topic, e.Kind, err)
		case amqp.AccessRefused:
			return fmt.Errorf("not allowed to declare exchange %q for topic %q: grant configure permission or set Passive: true: %w", e.Name, topic, err)
		}
	}
	return fmt.Errorf("declare exchange %q for topic %q: %w", e.Name, topic, err)
}

// confirmChannel returns the next of the exchange's confirm channels, or,
// while it is being opened, the round trip to wait for before asking
// again.
func (c *connection) confirmChannel(exchange string) (*confirmChannel, *roundTrip) {
	x := c.exchangeChannels(exchange)
	return x.channels[channelIndex(x.next.Add(1), len(x.channels))].get(c)
}

// channelIndex is the channel of n that counter value i picks, round
// robin. Unsigned: int(i) is negative past 2^31 on 32-bit platforms.
func channelIndex(i uint32, n int) int { return int(i % uint32(n)) }
