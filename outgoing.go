package durablews

import (
	"errors"
	"fmt"
	"maps"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
)

// outgoing is one message of a Publish call, validated and marshalled,
// until it has its outcome.
type outgoing struct {
	idx   int // in the call's msgs and results
	msg   *message.Message
	key   string // routing key
	pub   amqp.Publishing
	sent  bool // sent at least once: the broker may have it
	nacks int  // times the broker nacked it (Config.RetryNacks)
}

// prepare validates and marshals every message. It records failures in
// results and reports whether any message was invalid.
func (p *Publisher) prepare(topic string, ex Exchange, msgs []*message.Message, results []error) ([]outgoing, bool) {
	out := make([]outgoing, 0, len(msgs))
	invalid := false
	_, ownHeaders := p.cfg.Marshaler.(DefaultMarshaler) // a new table per message
	for i, msg := range msgs {
		fail := func(err error) {
			results[i] = fmt.Errorf("%w: %w", ErrInvalidMessage, err)
			invalid = true
		}
		if msg == nil {
			fail(errors.New("message is nil"))
			continue
		}
		key, err := p.cfg.routingKey(topic, ex, msg)
		if err != nil {
			fail(fmt.Errorf("%w: %w", ErrRoutingKey, err))
			continue
		}
		if err := p.cfg.validateForBrowser(msg); err != nil {
			fail(err)
			continue
		}
		pub, err := p.cfg.Marshaler.Marshal(msg)
		if err != nil {
			fail(fmt.Errorf("marshal: %w", err))
			continue
		}
		if pub.MessageId == "" {
			pub.MessageId = msg.UUID
		}
		if pub.MessageId == "" {
			fail(errors.New("message has no UUID: create it with message.NewMessage(watermill.NewUUID(), payload)"))
			continue
		}
		if err := checkPublishing(pub); err != nil {
			fail(fmt.Errorf("Config.Marshaler: %w", err))
			continue
		}
		if p.cfg.Mandatory && !ownHeaders {
			// The publish token is set in the headers: a custom
			// marshaler may share one table between messages.
			pub.Headers = maps.Clone(pub.Headers)
		}
		out = append(out, outgoing{idx: i, msg: msg, key: key, pub: pub})
	}
	return out, invalid
}

// failOut ends messages that are not in flight with err. One never sent
// also gets ErrNotSent; one sent before lost its confirm with a channel or
// the connection, and the broker may have it.
func failOut(out []outgoing, results []error, err error) {
	for _, o := range out {
		if o.sent {
			e := err
			if !errors.Is(e, ErrConfirmTimeout) && !errors.Is(e, ErrConnectionLost) && !errors.Is(e, ErrPublisherClosed) && !errors.Is(e, ErrRefused) {
				e = fmt.Errorf("%w, not republished: %w", ErrConnectionLost, e)
			}
			results[o.idx] = fmt.Errorf("%w (its confirm was lost with a channel or the connection; the broker may have it)", e)
		} else {
			results[o.idx] = fmt.Errorf("%w: %w", ErrNotSent, err)
		}
	}
}

// failNacked ends nacked messages that will not be sent again: err says
// why (ErrConfirmTimeout: the deadline came first; ErrPublisherClosed).
func failNacked(nacked []outgoing, results []error, err error) {
	for _, o := range nacked {
		why := "Config.ConfirmTimeout ran out before the broker took it"
		if !errors.Is(err, ErrConfirmTimeout) {
			why = "not retried: " + err.Error()
		}
		results[o.idx] = fmt.Errorf("%w (%d times; %s)", ErrNacked, o.nacks, why)
	}
}
