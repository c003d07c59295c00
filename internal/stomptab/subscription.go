package stomptab

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-stomp/stomp/v3/frame"
)

// ErrStaleAck is returned when acking a message that was delivered on
// another connection or subscription. RabbitMQ ignores the session part
// of ack ids, so replaying an old id on a new connection could ack an
// unrelated delivery; browsers must not do that either.
var ErrStaleAck = errors.New("stomptab: message was not delivered on this subscription")

// Message is one STOMP MESSAGE frame.
type Message struct {
	// ID is the key the browser deduplicates on (web/internal.js
	// messageKey): amqp-message-id (the AMQP message_id property), or
	// Watermill's _watermill_message_uuid header when that is empty.
	// Stable across redeliveries.
	ID string
	// AckID is the ack header (T_<sub>@@<session>@@<tag>), different on
	// every delivery.
	AckID string
	// Redelivered mirrors the redelivered:true header.
	Redelivered bool
	Body        []byte
	// Headers holds every header; for repeated names the first value wins
	// (as in stompjs).
	Headers map[string]string

	sub *Subscription // the subscription it was delivered on
}

// Subscription is one SUBSCRIBE on a Tab. The tab's reader appends
// messages to an unbounded buffer (it must never wait on a slow test),
// and Next hands them out in arrival order.
type Subscription struct {
	tab         *Tab
	id          string
	destination string

	mu     sync.Mutex
	buf    []Message
	err    error // terminal error, set once the connection ended
	notify chan struct{}
}

func newSubscription(t *Tab, id, dest string) *Subscription {
	return &Subscription{tab: t, id: id, destination: dest, notify: make(chan struct{}, 1)}
}

// ID is the STOMP subscription id (the queue name).
func (s *Subscription) ID() string { return s.id }

// Destination is the STOMP destination subscribed to.
func (s *Subscription) Destination() string { return s.destination }

func (s *Subscription) deliver(f *frame.Frame) {
	msg := convert(f)
	msg.sub = s
	s.mu.Lock()
	s.buf = append(s.buf, msg)
	s.mu.Unlock()
	s.wake()
}

// fail records why no more messages will come: ErrClosed, wrapping the
// cause when the tab did not end the connection itself.
func (s *Subscription) fail(cause error) {
	err := ErrClosed
	if !errors.Is(cause, ErrClosed) {
		err = fmt.Errorf("%w: %w", ErrClosed, cause)
	}
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.wake()
}

func (s *Subscription) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func convert(f *frame.Frame) Message {
	h := make(map[string]string, f.Header.Len())
	for i := 0; i < f.Header.Len(); i++ {
		k, v := f.Header.GetAt(i)
		if _, dup := h[k]; !dup {
			h[k] = v
		}
	}
	return Message{
		ID:          messageKey(h),
		AckID:       h["ack"],
		Redelivered: h["redelivered"] == "true",
		Body:        f.Body,
		Headers:     h,
	}
}

// Next returns the next message in arrival order. After the tab was
// closed or dropped, already-received messages are still returned, then
// an error wrapping ErrClosed (and the broker's ERROR, if any).
func (s *Subscription) Next(ctx context.Context) (Message, error) {
	for {
		s.mu.Lock()
		if len(s.buf) > 0 {
			m := s.buf[0]
			s.buf[0] = Message{}
			s.buf = s.buf[1:]
			s.mu.Unlock()
			return m, nil
		}
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return Message{}, err
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			return Message{}, ctx.Err()
		}
	}
}

// Buffered is the number of received messages not yet returned by Next.
func (s *Subscription) Buffered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buf)
}

// Ack sends ACK id:<ack> for m (client-individual: only that delivery).
// It does not wait for the broker (use Tab.Sync for that) and fails with
// ErrClosed or ErrBrokerClosed once the connection has ended.
func (s *Subscription) Ack(m Message) error {
	return s.ackNack(frame.ACK, m)
}

// Nack sends NACK id:<ack>; RabbitMQ requeues the delivery.
func (s *Subscription) Nack(m Message) error {
	return s.ackNack(frame.NACK, m)
}

func (s *Subscription) ackNack(command string, m Message) error {
	if m.sub != s || m.AckID == "" {
		return ErrStaleAck
	}
	return s.tab.write(frame.New(command, frame.Id, m.AckID))
}

func messageKey(h map[string]string) string {
	if id := h["amqp-message-id"]; id != "" {
		return id
	}
	return h["_watermill_message_uuid"]
}
