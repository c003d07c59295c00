package stomptab

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-stomp/stomp/v3"
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

	raw *stomp.Message
	sub *Subscription
}

// Subscription is one SUBSCRIBE on a Tab. Messages are drained from
// go-stomp continuously into an unbounded buffer (go-stomp stalls the
// whole connection if a subscription channel is not read), and handed
// out in arrival order by Next.
type Subscription struct {
	tab         *Tab
	ss          *stomp.Subscription
	id          string
	destination string

	mu       sync.Mutex
	buf      []Message
	err      error // terminal error, set once the go-stomp channel closed
	notify   chan struct{}
	pumpDone chan struct{}
}

func newSubscription(t *Tab, ss *stomp.Subscription, id, dest string) *Subscription {
	s := &Subscription{
		tab:         t,
		ss:          ss,
		id:          id,
		destination: dest,
		notify:      make(chan struct{}, 1),
		pumpDone:    make(chan struct{}),
	}
	go s.pump()
	return s
}

// ID is the STOMP subscription id (the queue name).
func (s *Subscription) ID() string { return s.id }

// Destination is the STOMP destination subscribed to.
func (s *Subscription) Destination() string { return s.destination }

func (s *Subscription) pump() {
	defer close(s.pumpDone)
	var termErr error
	for m := range s.ss.C {
		if m.Err != nil {
			if termErr == nil {
				termErr = m.Err
			}
			continue
		}
		msg := convert(m)
		msg.sub = s
		s.mu.Lock()
		s.buf = append(s.buf, msg)
		s.mu.Unlock()
		s.wake()
	}
	s.mu.Lock()
	if termErr == nil {
		termErr = ErrClosed
	} else {
		termErr = fmt.Errorf("%w: %w", ErrClosed, termErr)
	}
	s.err = termErr
	s.mu.Unlock()
	s.wake()
}

func (s *Subscription) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func convert(m *stomp.Message) Message {
	h := make(map[string]string, m.Header.Len())
	for i := 0; i < m.Header.Len(); i++ {
		k, v := m.Header.GetAt(i)
		if _, dup := h[k]; !dup {
			h[k] = v
		}
	}
	return Message{
		ID:          messageKey(h),
		AckID:       h["ack"],
		Redelivered: h["redelivered"] == "true",
		Body:        m.Body,
		Headers:     h,
		raw:         m,
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
func (s *Subscription) Ack(m Message) error {
	if m.sub != s || m.raw == nil {
		return ErrStaleAck
	}
	return s.tab.conn.Ack(m.raw)
}

// Nack sends NACK id:<ack>; RabbitMQ requeues the delivery.
func (s *Subscription) Nack(m Message) error {
	if m.sub != s || m.raw == nil {
		return ErrStaleAck
	}
	return s.tab.conn.Nack(m.raw)
}

func messageKey(h map[string]string) string {
	if id := h["amqp-message-id"]; id != "" {
		return id
	}
	return h["_watermill_message_uuid"]
}
