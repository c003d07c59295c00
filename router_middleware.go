package durablews

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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

	// Receipts, when set, makes the forward wait for delivery receipts
	// (package receipts; a *receipts.Tracker): after the broker confirmed
	// the forwarded messages, the source message's ack is held until
	// ReceiptTabs tabs sent a receipt for each of them, or ReceiptTimeout
	// passed; then the handler fails with ErrNoReceipt and the router's
	// retry or poison middleware decides. A retried forward republishes
	// the same UUID: a tab that already handled it drops the duplicate
	// (and sends no second receipt), and the Tracker still has the first
	// one if it came after the timeout. nil: the forward returns once the
	// broker confirmed.
	Receipts ReceiptWaiter
	// ReceiptTimeout bounds the wait for receipts of one forward. Zero
	// means DefaultReceiptTimeout. Only used with Receipts.
	ReceiptTimeout time.Duration
	// ReceiptTabs is how many different tabs must send a receipt for each
	// forwarded message. Zero means 1. Only used with Receipts.
	ReceiptTabs int
}

// DefaultReceiptTimeout is Forward.ReceiptTimeout's default.
const DefaultReceiptTimeout = 30 * time.Second

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
	switch {
	case f.ReceiptTimeout < 0:
		errs = append(errs, fmt.Errorf("durablews: Forward.ReceiptTimeout %v is negative (zero means %v)", f.ReceiptTimeout, DefaultReceiptTimeout))
	case f.ReceiptTabs < 0:
		errs = append(errs, fmt.Errorf("durablews: Forward.ReceiptTabs %d is negative (zero means 1)", f.ReceiptTabs))
	case f.Receipts == nil && (f.ReceiptTimeout != 0 || f.ReceiptTabs != 0):
		errs = append(errs, errors.New("durablews: Forward.ReceiptTimeout or ReceiptTabs is set but Forward.Receipts is nil: pass the *receipts.Tracker to wait with"))
	}
	if f.ReceiptTimeout == 0 {
		f.ReceiptTimeout = DefaultReceiptTimeout
	}
	if f.ReceiptTabs == 0 {
		f.ReceiptTabs = 1
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
// With Forward.Receipts the forward also waits, after the confirm, until
// Forward.ReceiptTabs browser tabs sent a delivery receipt for every
// forwarded message (it fails with ErrNoReceipt after
// Forward.ReceiptTimeout), so the source message is acked only once tabs
// handled what it became.
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
			if err := f.waitReceipts(msg.Context(), out); err != nil {
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

// waitReceipts waits until f.ReceiptTabs tabs sent a receipt for each
// message of out, all within one f.ReceiptTimeout.
func (f *Forward) waitReceipts(ctx context.Context, out []*message.Message) error {
	if f.Receipts == nil || len(out) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, f.ReceiptTimeout)
	defer cancel()
	errs := make([]error, len(out))
	var wg sync.WaitGroup
	for i, m := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.waitReceipt(ctx, m.UUID)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (f *Forward) waitReceipt(ctx context.Context, uuid string) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("durablews: forward to browsers (topic %q): %w for message %s from %d tab(s) within Forward.ReceiptTimeout %v: %w",
				f.Topic, ErrNoReceipt, uuid, f.ReceiptTabs, f.ReceiptTimeout, err)
		}
	}()
	defer recoverUser("Forward.Receipts.WaitTabs", &err)
	_, err = f.Receipts.WaitTabs(ctx, uuid, f.ReceiptTabs)
	return err
}
