package broadcast

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Kinds of Position.
const (
	// KindLast: the page's state includes every message up to offset
	// Position.Offset; the page resumes there like a returning tab.
	KindLast = "last"
	// KindTimestamp: start at the first chunk written at or after
	// Position.Time (whole seconds).
	KindTimestamp = "timestamp"
	// KindFirst: start at the oldest message the stream still holds.
	KindFirst = "first"
	// KindNext: only what is published from now on (a page without a
	// server position).
	KindNext = "next"
)

// DefaultEndWait is how long EndPosition waits for the stream's last chunk
// when the caller gives no wait.
const DefaultEndWait = 2 * time.Second

// Position is where a page starts reading a stream. The server hands it to
// the page when it renders it; see the package doc for how the page uses
// it. The zero Position is KindFirst.
type Position struct {
	Kind   string
	Offset int64     // KindLast
	Time   time.Time // KindTimestamp, whole seconds
}

// LastPosition is the Position of a tab that has handled offset.
func LastPosition(offset int64) Position { return Position{Kind: KindLast, Offset: offset} }

// TimestampPosition is the Position "every chunk written at or after t",
// rounded down to whole seconds. It needs no broker call. Take t before
// reading the state the page renders, and subtract the largest clock skew
// between this host and the broker, or a gap can open.
func TimestampPosition(t time.Time) Position {
	return Position{Kind: KindTimestamp, Time: time.Unix(t.Unix(), 0)}
}

// Header is the value of the SUBSCRIBE header x-stream-offset for p:
// offset=<Offset>, timestamp=<unix seconds>, next or first.
func (p Position) Header() string {
	switch p.Kind {
	case KindLast:
		return "offset=" + strconv.FormatInt(p.Offset, 10)
	case KindTimestamp:
		return "timestamp=" + strconv.FormatInt(p.Time.Unix(), 10)
	case KindNext:
		return KindNext
	default:
		return KindFirst
	}
}

// MarshalJSON gives what the page reads: {"last":N}, {"timestamp":S}
// (unix seconds), {"next":true} or {"first":true}.
func (p Position) MarshalJSON() ([]byte, error) {
	switch p.Kind {
	case KindLast:
		return json.Marshal(map[string]int64{"last": p.Offset})
	case KindTimestamp:
		return json.Marshal(map[string]int64{"timestamp": p.Time.Unix()})
	case KindNext:
		return []byte(`{"next":true}`), nil
	default:
		return []byte(`{"first":true}`), nil
	}
}

// String is Header, for logs.
func (p Position) String() string { return p.Header() }

// EndPosition returns where a page rendered now should start: the offset
// of the first message of the stream's last chunk (KindLast), so that the
// page receives the rest of that chunk again and everything after it, an
// overlap but never a gap.
//
// It reads that offset the cheap way AMQP allows on RabbitMQ 3.10.8: a
// consumer with x-stream-offset=last and prefetch 1 on a fresh channel,
// closed after the first delivery. The broker reports no end offset over
// AMQP, so an empty stream cannot be told from a slow broker; when nothing
// arrives within wait (zero means DefaultEndWait), EndPosition returns
// KindFirst, which is exact for an empty stream and replays the stream
// otherwise (again an overlap, never a gap). Call it before reading the
// state the page renders.
func EndPosition(ctx context.Context, conn Channeler, stream string, wait time.Duration) (Position, error) {
	if wait <= 0 {
		wait = DefaultEndWait
	}
	var pos Position
	err := withChannel(ctx, conn, func(ch *amqp.Channel) error {
		if err := ch.Qos(1, 0, false); err != nil {
			return err
		}
		deliveries, err := ch.Consume(stream, "", false, false, false, false, amqp.Table{"x-stream-offset": "last"})
		if err != nil {
			return err
		}
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("the consumer was closed before the first delivery")
			}
			off, err := DeliveryOffset(d.Headers)
			if err != nil {
				return err
			}
			pos = LastPosition(off)
		case <-timer.C:
			pos = Position{Kind: KindFirst}
		}
		return nil
	})
	if isCode(err, amqp.NotFound) {
		return Position{}, fmt.Errorf("broadcast: stream %q does not exist: declare it (broadcast.Declare, durablews setup -streams): %v", stream, reason(err))
	}
	if err != nil {
		return Position{}, fmt.Errorf("broadcast: end position of stream %q: %w", stream, err)
	}
	return pos, nil
}

// DeliveryOffset is the x-stream-offset header RabbitMQ puts on every
// message it delivers from a stream.
func DeliveryOffset(h amqp.Table) (int64, error) {
	switch v := h["x-stream-offset"].(type) {
	case int64:
		return v, nil
	case int32:
		return int64(v), nil
	case nil:
		return 0, errors.New("delivery has no x-stream-offset header: is the queue a stream?")
	default:
		return 0, fmt.Errorf("x-stream-offset header of unexpected type %T", v)
	}
}

// ErrNotReady is in WaitReady's error when the broker closed the
// connection instead of refusing the consumer while the stream recovers
// (RabbitMQ 4.3: 541 INTERNAL_ERROR): dial again and call WaitReady again.
var ErrNotReady = errors.New("stream not ready")

// WaitReady waits until the stream can be read on the node conn is
// connected to: a consumer on it is accepted (a stream whose replica on
// that node is still starting, after a broker restart, refuses consumers
// with "does not have a replica on the local node", or with NOT_FOUND
// "home node ... is down or inaccessible" while it recovers).
//
// Publish to a stream only once it is ready after a broker restart:
// RabbitMQ 3.10.8 was seen confirming messages routed to a stream that
// was still recovering without storing them, and 4.0.5 returning them as
// unroutable (see the package doc). On 4.3 the broker may close the
// connection instead of refusing the consumer: the error then wraps
// ErrNotReady, and the caller dials again.
func WaitReady(ctx context.Context, conn Channeler, stream string) error {
	for {
		err := withChannel(ctx, conn, func(ch *amqp.Channel) error {
			if err := ch.Qos(1, 0, false); err != nil {
				return err
			}
			_, err := ch.Consume(stream, "", false, false, false, false, amqp.Table{"x-stream-offset": KindNext})
			return err
		})
		recovering := isCode(err, amqp.PreconditionFailed) || errors.Is(err, amqp.ErrClosed) ||
			(isCode(err, amqp.NotFound) && strings.Contains(reason(err), "is down or inaccessible"))
		switch {
		case err == nil:
			return nil
		case isCode(err, amqp.InternalError):
			// RabbitMQ 4.3 answers a consumer on a stream that is still
			// recovering with 541 INTERNAL_ERROR, a connection exception:
			// conn is closed, so waiting here cannot succeed.
			return fmt.Errorf("broadcast: stream %q not ready: the broker closed the connection (%v) while the stream recovers after a restart: %w; "+
				"dial again and call WaitReady again (as Config.OnConnect of a durablews Publisher, this happens by itself: the Publisher reconnects)",
				stream, reason(err), ErrNotReady)
		case isCode(err, amqp.NotFound) && !recovering:
			return fmt.Errorf("broadcast: stream %q does not exist: declare it (broadcast.Declare, durablews setup -streams): %v", stream, reason(err))
		case !recovering && ctx.Err() == nil:
			return fmt.Errorf("broadcast: wait for stream %q: %w", stream, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("broadcast: stream %q not ready: %w (last: %v)", stream, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
