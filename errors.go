package durablews

import (
	"errors"
	"fmt"
	"strings"
)

// Errors a message can fail with. Publish returns them inside a
// *PublishError, one per failed message; test with errors.Is on the
// *PublishError (it matches if any message failed for that reason) or on a
// MessageError.Err.
var (
	// ErrPublisherClosed: Publish was called after Close, or Close
	// interrupted a publish that was waiting to reconnect or waiting on a
	// connection the broker blocks (resource alarm).
	ErrPublisherClosed = errors.New("durablews: publisher is closed")
	// ErrNacked: the broker refused the message (basic.nack), e.g. a queue
	// with x-overflow reject-publish is full, or, on a cluster, a quorum
	// queue had no leader. Other queues may still have received it, so a
	// blind retry can duplicate it there. With Config.RetryNacks the
	// Publisher already retried it until Config.ConfirmTimeout.
	ErrNacked = errors.New("nacked by the broker")
	// ErrUnroutable: Config.Mandatory is on and no queue is bound for the
	// message's routing key (basic.return). Nothing received it.
	ErrUnroutable = errors.New("unroutable: no queue is bound for its routing key (returned by the broker because Config.Mandatory is set)")
	// ErrConfirmTimeout: no confirm within Config.ConfirmTimeout. The
	// broker may still have the message.
	ErrConfirmTimeout = errors.New("no confirm within Config.ConfirmTimeout")
	// ErrConnectionLost: the connection or channel closed before the
	// confirm came and the publisher could not republish it (in time, or
	// at all: the wrapped reason says why). The broker may still have the
	// message.
	ErrConnectionLost = errors.New("connection lost before the broker confirmed")
	// ErrRefused: the broker closed the publishing channel with a channel
	// error about what was published (403 ACCESS_REFUSED: the user may
	// not write to the exchange; 406 PRECONDITION_FAILED, e.g. a message
	// over the broker's max_message_size), so republishing would only
	// repeat it. errors.As(err, &amqpErr) with amqpErr an *amqp.Error
	// (amqp091-go) gives the code and the broker's reason. The broker
	// names no message: every message of the call whose confirm was lost
	// with that channel, or that was still to be sent on it (then also
	// ErrNotSent), fails with it. A message sent before may still have
	// been delivered. (A 404, an exchange deleted while publishing, is
	// handled by declaring it again.)
	ErrRefused = errors.New("refused by the broker")
	// ErrInvalidMessage: the message was rejected before sending, because
	// of the message itself or of what Config.Marshaler made of it (not
	// persistent, a header value AMQP cannot carry); see the MessageError
	// text for what to fix.
	ErrInvalidMessage = errors.New("invalid message")
	// ErrUnknownTopic: Publish was given an empty topic, or one that
	// neither Config.Exchanges nor Config.ExchangeFor maps; the error
	// lists the configured topics. Every message of the call fails with
	// it (and ErrNotSent).
	ErrUnknownTopic = errors.New("unknown topic")
	// ErrNotSent: the message was valid but not sent: another message of
	// the same batch was invalid, or the reason it wraps (e.g.
	// ErrConfirmTimeout while declaring the exchange, or an exchange that
	// does not exist) stopped it before it was sent. The broker does not
	// have it.
	ErrNotSent = errors.New("not sent")
	// ErrRoutingKey: no usable routing key could be computed for the
	// message (Publish and forwards wrap it). Retrying will not help;
	// route such messages to a poison queue:
	//
	//	middleware.PoisonQueueWithFilter(pub, "poison", func(err error) bool {
	//		return errors.Is(err, durablews.ErrRoutingKey)
	//	})
	ErrRoutingKey = errors.New("no usable routing key")
	// ErrNoReceipt: a forward with Forward.Receipts was confirmed by the
	// broker, but fewer than Forward.ReceiptTabs browser tabs sent a
	// delivery receipt for a forwarded message within
	// Forward.ReceiptTimeout (or the ReceiptWaiter failed). The handler
	// fails with it, so the router's retry or poison middleware decides;
	// a retried forward republishes the same UUID, which the browser
	// drops as a duplicate.
	ErrNoReceipt = errors.New("no delivery receipt")
)

// MessageError is the outcome of one message that was not confirmed.
type MessageError struct {
	// UUID of the message ("" for a nil message).
	UUID string
	// Index of the message in the Publish call.
	Index int
	// Err is one of the Err* values above, wrapped with detail, or the
	// message context's error.
	Err error
}

func (e MessageError) Error() string {
	return fmt.Sprintf("message %d (%s): %v", e.Index, e.UUID, e.Err)
}

func (e MessageError) Unwrap() error { return e.Err }

// PublishError reports a Publish call in which not every message was
// confirmed. It lists the confirmed UUIDs and, for each other message,
// why it was not confirmed.
type PublishError struct {
	Topic     string
	Confirmed []string
	Failed    []MessageError
}

func (e *PublishError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "durablews: publish to topic %q: %d of %d messages not confirmed",
		e.Topic, len(e.Failed), len(e.Failed)+len(e.Confirmed))
	const show = 10
	for i, f := range e.Failed {
		if i == show {
			fmt.Fprintf(&b, "; and %d more", len(e.Failed)-show)
			break
		}
		b.WriteString("; ")
		b.WriteString(f.Error())
	}
	return b.String()
}

// Unwrap lets errors.Is(err, ErrNacked) and friends match any failure.
func (e *PublishError) Unwrap() []error {
	errs := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		errs[i] = f
	}
	return errs
}

// NotConfirmed returns the UUIDs of the messages that were not confirmed.
func (e *PublishError) NotConfirmed() []string {
	ids := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		ids[i] = f.UUID
	}
	return ids
}
