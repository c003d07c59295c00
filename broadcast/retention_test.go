package broadcast_test

import (
	"errors"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/broadcast"
)

// RabbitMQ evaluates a stream's retention in the background, in one
// process for all streams (osiris_retention), once per new segment file;
// nothing else starts it. So after the last publish the queued
// evaluations run, and then the stream's first offset stays put. Tests
// with tiny segments wait for that, for two reasons:
//
//   - a tab that resumes while evaluations are still queued reads the
//     oldest segment as retention removes the next one: it silently misses
//     a segment in the middle (seen on 3.10.8: 10 messages of 61);
//   - on 3.10.8 an evaluation of a stream deleted meanwhile crashes
//     osiris_retention ({bad_return_value,missing_file}); six crashes in a
//     few seconds stopped the osiris application and with it the whole
//     shared broker (a -count=40 run of TestStreamTabReportsRetentionGap).
//     4.0.5 and 4.3.6 do not crash.

// retentionQuiet is how long the first offset must stay unchanged to
// count as settled: evaluations take milliseconds each.
const retentionQuiet = 2 * time.Second

// settleRetention waits (up to 30 s) until the first offset of stream has
// stayed the same for retentionQuiet and returns it; ok is false when it
// did not settle or the stream could not be read (err says why).
func (e *env) settleRetention(stream string) (first int64, waited time.Duration, ok bool, err error) {
	start := time.Now()
	var since time.Time
	last := int64(-1)
	for time.Since(start) < 30*time.Second {
		off, err := e.firstOffset(stream)
		if err != nil {
			return 0, time.Since(start), false, err
		}
		if off != last {
			last, since = off, time.Now()
		} else if time.Since(since) >= retentionQuiet {
			return off, time.Since(start), true, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last, time.Since(start), false, nil
}

// firstOffset is the offset of the oldest message stream holds, read over
// AMQP without failing the test (usable in a cleanup).
func (e *env) firstOffset(stream string) (int64, error) {
	ch, err := e.conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	if err := ch.Qos(1, 0, false); err != nil {
		return 0, err
	}
	ds, err := ch.Consume(stream, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
	if err != nil {
		return 0, err
	}
	select {
	case d, ok := <-ds:
		if !ok {
			return 0, errors.New("consumer closed")
		}
		return broadcast.DeliveryOffset(d.Headers)
	case <-time.After(5 * time.Second):
		return 0, errors.New("no message within 5 s: the stream is empty")
	}
}
