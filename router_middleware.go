package durablews

import (
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// ForwardedMessages selects the messages a forward sends to browsers: the
// one the handler consumed, the ones it produced, or both.
type ForwardedMessages int

const (
	// ForwardConsumed forwards the message the handler consumed.
	ForwardConsumed ForwardedMessages = 1 << iota
	// ForwardProduced forwards the messages the handler returned.
	ForwardProduced
	// ForwardBoth forwards both.
	ForwardBoth = ForwardConsumed | ForwardProduced
)

// Forward configures ForwardMiddleware and ForwardHandler.
type Forward struct {
	// Publisher that sends to browsers. Required. Use a *Publisher: the
	// guarantee depends on Publish returning nil only after the broker
	// confirmed.
	Publisher message.Publisher
	// Topic of Publisher to forward to (in Config.Exchanges or mapped by
	// Config.ExchangeFor). Required.
	Topic string
	// RoutingKey computes a forwarded message's routing key, e.g. from its
	// payload. Default: the message's RoutingKeyMetadataKey metadata; a
	// message without one fails with ErrRoutingKey when the exchange needs
	// a key.
	RoutingKey func(msg *message.Message) (string, error)
	// Filter, when set, forwards only messages it returns true for; the
	// others are acked normally.
	Filter func(msg *message.Message) bool
	// Messages selects which messages to forward. Default
	// ForwardConsumed.
	Messages ForwardedMessages
}

func (f *Forward) validate() error {
	var errs []error
	if f.Publisher == nil {
		errs = append(errs, errors.New("durablews: Forward.Publisher is nil: pass the *durablews.Publisher to forward with"))
	}
	if f.Topic == "" {
		errs = append(errs, errors.New("durablews: Forward.Topic is empty: name the topic (exchange) browsers subscribe to"))
	}
	if f.Messages == 0 {
		f.Messages = ForwardConsumed
	}
	if f.Messages&^ForwardBoth != 0 {
		errs = append(errs, fmt.Errorf("durablews: Forward.Messages %d is not ForwardConsumed, ForwardProduced or ForwardBoth", f.Messages))
	}
	return errors.Join(errs...)
}

// ForwardMiddleware returns router middleware that, after the wrapped
// handler succeeded, publishes the selected messages to browsers and
// returns only once the broker confirmed them. If the forward fails the
// handler's result becomes an error, so the router nacks the consumed
// message and the source redelivers it: the source message is acked only
// after its forward was confirmed. A redelivered message is forwarded
// again with the same UUID, which the browser client drops as a duplicate.
//
// Forwarded messages are copies with the original UUID, payload and
// metadata; produced messages also inherit the consumed message's
// correlation ID when they have none, whatever the middleware order.
// Handlers must be idempotent, as always with at-least-once delivery.
func ForwardMiddleware(f Forward) (message.HandlerMiddleware, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			produced, err := h(msg)
			if err != nil {
				return produced, err
			}
			var out []*message.Message
			if f.Messages&ForwardConsumed != 0 {
				out = f.appendCopy(out, msg, msg)
			}
			if f.Messages&ForwardProduced != 0 {
				for _, p := range produced {
					out = f.appendCopy(out, p, msg)
				}
			}
			if err := f.publish(out); err != nil {
				return nil, err
			}
			return produced, nil
		}
	}, nil
}

// ForwardHandler returns a handler for Router.AddConsumerHandler that only
// forwards each consumed message to browsers (f.Messages is ignored):
//
//	router.AddConsumerHandler("to-browsers", "orders", sub, durablews.ForwardHandler(fwd))
//
// An invalid Forward makes every call return the configuration error;
// call ForwardMiddleware first to get that error at setup.
func ForwardHandler(f Forward) message.NoPublishHandlerFunc {
	f.Messages = ForwardConsumed
	mw, err := ForwardMiddleware(f)
	if err != nil {
		return func(*message.Message) error { return err }
	}
	h := mw(func(*message.Message) ([]*message.Message, error) { return nil, nil })
	return func(msg *message.Message) error {
		_, err := h(msg)
		return err
	}
}

func (f *Forward) appendCopy(out []*message.Message, m, consumed *message.Message) []*message.Message {
	if m == nil || (f.Filter != nil && !f.Filter(m)) {
		return out
	}
	c := m.Copy()
	c.SetContext(consumed.Context())
	if m != consumed && middleware.MessageCorrelationID(c) == "" {
		if id := middleware.MessageCorrelationID(consumed); id != "" {
			middleware.SetCorrelationID(id, c)
		}
	}
	return append(out, c)
}

func (f *Forward) publish(out []*message.Message) error {
	if len(out) == 0 {
		return nil
	}
	if f.RoutingKey != nil {
		for _, m := range out {
			key, err := f.routingKey(m)
			if err != nil {
				return fmt.Errorf("%w for message %s: %v", ErrRoutingKey, m.UUID, err)
			}
			m.Metadata.Set(RoutingKeyMetadataKey, key)
		}
	}
	if err := f.Publisher.Publish(f.Topic, out...); err != nil {
		return fmt.Errorf("durablews: forward to browsers (topic %q): %w", f.Topic, err)
	}
	return nil
}

func (f *Forward) routingKey(m *message.Message) (key string, err error) {
	defer recoverUser("Forward.RoutingKey", &err)
	key, err = f.RoutingKey(m)
	if err == nil && key == "" {
		err = errors.New("Forward.RoutingKey returned an empty key")
	}
	return key, err
}
