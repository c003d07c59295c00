package stomptab

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/durablews/durablews/broadcast"
)

// Gap is a range of stream offsets that may have held messages a tab
// never received: retention removed them while it was away. Offsets are
// not dense, so a Gap says "possibly lost", not how many.
type Gap struct{ From, To int64 }

// StreamStats counts what a StreamReader saw.
type StreamStats struct {
	Subscriptions int // SUBSCRIBE frames sent
	Deliveries    int // MESSAGE frames received
	Handled       int // messages handed to the page
	SkippedOffset int // offset <= last handled: a resume's repeated frame
	DuplicateID   int // new offset, but an amqp-message-id handled before
}

// StreamMessage is a handled stream message and its offset.
type StreamMessage struct {
	Message
	Offset int64
}

// StreamReader is one tab's reader of one broadcast stream, across
// connections: it follows the wire protocol in package broadcast's doc
// (subscribe at the last handled offset, ACK everything with
// client-individual, never NACK, drop offsets already handled and ids
// already handled, report a gap when the first offset of a subscription
// is beyond last+1). It is the page's memory (sessionStorage), so one
// StreamReader outlives the Tabs it subscribes on. Safe for concurrent
// use, but Receive of one subscription at a time.
type StreamReader struct {
	stream   string
	prefetch int

	mu      sync.Mutex
	pos     broadcast.Position // start, then LastPosition(last handled)
	seen    map[string]struct{}
	handled []StreamMessage
	gaps    []Gap
	stats   StreamStats
}

// NewStreamReader returns a reader of stream starting at start (the
// server's Position; the zero Position is "first"). prefetch <= 0 means
// DefaultPrefetch.
func NewStreamReader(stream string, start broadcast.Position, prefetch int) *StreamReader {
	if prefetch <= 0 {
		prefetch = DefaultPrefetch
	}
	return &StreamReader{stream: stream, prefetch: prefetch, pos: start, seen: make(map[string]struct{})}
}

// StreamSubscription is one SUBSCRIBE of a StreamReader on a Tab.
type StreamSubscription struct {
	r     *StreamReader
	sub   *Subscription
	want  broadcast.Position // what the SUBSCRIBE asked for
	first bool               // no MESSAGE received yet
}

// Headers are the SUBSCRIBE headers (besides destination and
// ack:client-individual) for a subscription starting at pos.
func (r *StreamReader) Headers(pos broadcast.Position) [][2]string {
	return [][2]string{
		{"id", "stream-" + r.stream},
		{"prefetch-count", strconv.Itoa(r.prefetch)},
		{"x-stream-offset", pos.Header()},
	}
}

// Subscribe subscribes to /amq/queue/<stream> on tab, at the last handled
// offset (or the start Position while nothing was handled), and waits
// until the broker has processed the SUBSCRIBE.
func (r *StreamReader) Subscribe(ctx context.Context, tab *Tab) (*StreamSubscription, error) {
	r.mu.Lock()
	want := r.pos
	r.stats.Subscriptions++
	r.mu.Unlock()
	sub, err := tab.subscribe(ctx, "/amq/queue/"+escapeSegment(r.stream), "stream-"+r.stream, r.Headers(want))
	if err != nil {
		return nil, err
	}
	return &StreamSubscription{r: r, sub: sub, want: want, first: true}, nil
}

// Position is where the next Subscribe starts.
func (r *StreamReader) Position() broadcast.Position {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pos
}

// Handled returns the handled messages in order.
func (r *StreamReader) Handled() []StreamMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]StreamMessage(nil), r.handled...)
}

// HandledIDs returns the ids of the handled messages in order.
func (r *StreamReader) HandledIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, len(r.handled))
	for i, m := range r.handled {
		ids[i] = m.ID
	}
	return ids
}

// Gaps returns the gaps reported so far.
func (r *StreamReader) Gaps() []Gap {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Gap(nil), r.gaps...)
}

// Stats returns the counters.
func (r *StreamReader) Stats() StreamStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

func (r *StreamReader) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.handled)
}

// Receive handles messages until the reader has handled at least n in
// total (over all its subscriptions). It returns the first error from the
// connection, or a protocol error (a MESSAGE without x-stream-offset).
func (s *StreamSubscription) Receive(ctx context.Context, n int) error {
	return s.receive(ctx, fmt.Sprintf("%d messages", n), func() bool { return s.r.count() >= n })
}

// ReceiveID handles messages until the message with id has been handled.
func (s *StreamSubscription) ReceiveID(ctx context.Context, id string) error {
	return s.receive(ctx, "message "+id, func() bool {
		s.r.mu.Lock()
		defer s.r.mu.Unlock()
		_, ok := s.r.seen[id]
		return ok
	})
}

func (s *StreamSubscription) receive(ctx context.Context, what string, done func() bool) error {
	for !done() {
		m, err := s.sub.Next(ctx)
		if err != nil {
			return fmt.Errorf("stomptab: stream %s: waiting for %s, handled %d: %w", s.r.stream, what, s.r.count(), err)
		}
		if err := s.handle(m); err != nil {
			return err
		}
	}
	return nil
}

// ErrNoOffset reports a MESSAGE from a stream subscription without a
// usable x-stream-offset header.
var ErrNoOffset = errors.New("stomptab: MESSAGE without a valid x-stream-offset header")

func (s *StreamSubscription) handle(m Message) error {
	off, err := strconv.ParseInt(m.Headers["x-stream-offset"], 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrNoOffset, m.Headers["x-stream-offset"])
	}
	s.r.observe(s.want, s.first, m, off)
	s.first = false
	// ACK returns credit only (the broker stores no offset); a stream
	// subscription never NACKs, which would close the STOMP session.
	return s.sub.Ack(m)
}

// observe applies the wire protocol's rules to one MESSAGE at offset off:
// the gap rule on a subscription's first frame, then skip by offset,
// skip by id, or handle.
func (r *StreamReader) observe(want broadcast.Position, first bool, m Message, off int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.Deliveries++
	if first && want.Kind == broadcast.KindLast && off > want.Offset+1 {
		r.gaps = append(r.gaps, Gap{From: want.Offset + 1, To: off - 1})
	}
	switch _, dup := r.seen[m.ID]; {
	case r.pos.Kind == broadcast.KindLast && off <= r.pos.Offset:
		r.stats.SkippedOffset++
	case dup && m.ID != "":
		r.stats.DuplicateID++
		r.pos = broadcast.LastPosition(off)
	default:
		if m.ID != "" {
			r.seen[m.ID] = struct{}{}
		}
		r.handled = append(r.handled, StreamMessage{Message: m, Offset: off})
		r.stats.Handled++
		r.pos = broadcast.LastPosition(off)
	}
}

// Subscription is the underlying STOMP subscription, for callers that
// read and ACK frames themselves (never NACK on a stream).
func (s *StreamSubscription) Subscription() *Subscription { return s.sub }
