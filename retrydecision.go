package durablews

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	amqp "github.com/rabbitmq/amqp091-go"
)

// maxChannelRetries bounds how often one Publish call republishes after a
// channel (not connection) error the broker gave no known cause for, so a
// persistent one ends in a clear error instead of a loop until
// ConfirmTimeout.
const maxChannelRetries = 3

// next is the retry decision of a Publish call: after a pass on conn,
// whose exchange declaration was decl, that left retry and nacked (and
// chanErr, why the broker closed the channel) unsettled, it returns the
// messages for the next pass, nil when each has its outcome in results,
// waiting first where the outcome calls for it. The outcomes, in the
// order checked:
//
//  1. Nacked messages (Config.RetryNacks: "not now" on a cluster, a
//     quorum queue without a leader): back off, then send them again.
//  2. Nothing to send again: done.
//  3. Only nacks: again, on the same connection if it lives.
//  4. The broker closed the channel with a channel exception (403, 406,
//     ...): every message left fails at once with ErrRefused.
//  5. The connection died: again, on the next connection.
//  6. 404, the exchange was deleted: declare it again, backing off while
//     it keeps disappearing.
//  7. The channel closed without a reason (it went with the connection):
//     wait until the connection is declared lost, or briefly, then again.
//  8. Another channel error: again, at most maxChannelRetries times.
func (c *publishCall) next(conn *connection, decl *roundTrip, retry, nacked []outgoing, chanErr *amqp.Error) []outgoing {
	if len(nacked) > 0 { // 1
		c.retried(len(nacked), ErrNacked)
		if err := c.sleep(nackBackoff(nacked)); err != nil {
			failNacked(nacked, c.results, err)
			failOut(retry, c.results, err)
			return nil
		}
	}
	out := append(retry, nacked...)
	switch {
	case len(out) == 0: // 2
		return nil
	case len(retry) == 0: // 3
		c.avoid = nil
		return out
	case chanErr != nil && chanErr.Server && isChannelException(chanErr.Code): // 4
		failOut(out, c.results, refusedError(c.ex, chanErr))
		return nil
	}
	c.logRepublish(retry, chanErr)
	switch {
	case conn.dead(): // 5
		c.avoid = conn
		return out
	case chanErr != nil && chanErr.Code == amqp.NotFound: // 6
		// While the broker is still deleting the exchange, it answers a
		// declare without acting on it (rabbit_exchange:declare), so the
		// exchange can be gone again: back off, until the deadline.
		conn.forget(c.ex.Name, decl)
		c.p.logger.Info("Exchange gone; declaring it again", watermill.LogFields{"topic": c.topic, "exchange": c.ex.Name, "passive": c.ex.Passive})
		if c.notFound > 0 {
			if err := c.sleep(10 * time.Millisecond << min(c.notFound-1, 6)); err != nil {
				failOut(out, c.results, fmt.Errorf("%w: exchange %q kept disappearing: %v", err, c.ex.Name, chanErr))
				return nil
			}
		}
		c.notFound++
		c.avoid = nil
		return out
	case chanErr == nil: // 7
		// After a failed write amqp091-go shuts the connection down in
		// another goroutine, so conn.dead() can still be false here;
		// retrying at once would spend the channel retries in
		// microseconds (measured on the cluster chaos test: hundreds of
		// messages failed "channel closed 4 times" right at a cut).
		if err := c.sleepUnless(100*time.Millisecond, conn.lost); err != nil {
			failOut(out, c.results, err)
			return nil
		}
		c.avoid = nil
		return out
	}
	c.channelRetries++ // 8
	if c.channelRetries > maxChannelRetries {
		failOut(out, c.results, fmt.Errorf("%w: channel closed %d times: %v", ErrConnectionLost, c.channelRetries, chanErr))
		return nil
	}
	c.avoid = nil
	return out
}

// isChannelException reports whether code is one of the channel-level
// errors a broker closes a channel with because of what was sent on it
// (AMQP 0-9-1 spec, section 1.9.1; 404 is handled on its own), rather
// than a connection-level error passed on to the channel.
func isChannelException(code int) bool {
	switch code {
	case amqp.ContentTooLarge, amqp.NoConsumers, amqp.AccessRefused, amqp.ResourceLocked, amqp.PreconditionFailed:
		return true
	}
	return false
}

// refusedError says what a channel exception means for a publish to ex.
func refusedError(ex Exchange, chanErr *amqp.Error) error {
	hint := ""
	switch chanErr.Code {
	case amqp.AccessRefused:
		hint = ": the broker's user may not publish there; grant it write permission on the exchange (rabbitmqctl set_permissions)"
	case amqp.PreconditionFailed, amqp.ContentTooLarge:
		hint = ": the broker refused a publish on the channel, e.g. a message over its max_message_size (lower Config.MaxPayloadBytes to match)"
	}
	return fmt.Errorf("%w: it closed the channel to exchange %q with %w%s; not republished, as that would only repeat it", ErrRefused, ex.Name, chanErr, hint)
}

// nackBackoff is the wait before nacked messages are sent again: 20 ms
// doubling with the most nacks any of them had, up to 1.28 s, jittered so
// that callers nacked together do not come back together. A leader
// election takes seconds; the cap keeps the retries going often enough to
// catch the new leader soon.
func nackBackoff(nacked []outgoing) time.Duration {
	n := 0
	for _, o := range nacked {
		n = max(n, o.nacks)
	}
	d := 20 * time.Millisecond << min(max(n-1, 0), 6)
	return d/2 + rand.N(d/2+1)
}

// logRepublish logs, at debug, that messages whose confirm was lost with a
// channel or the connection are about to be sent again, and tells a
// RetryObserver.
func (c *publishCall) logRepublish(out []outgoing, chanErr *amqp.Error) {
	n := 0
	for _, o := range out {
		if o.sent {
			n++
		}
	}
	if n == 0 {
		return
	}
	fields := watermill.LogFields{"topic": c.topic, "messages": n}
	reason := ErrConnectionLost
	if chanErr != nil {
		fields["reason"] = chanErr.Error()
		reason = fmt.Errorf("%w: %w", ErrConnectionLost, chanErr)
	}
	c.p.logger.Debug("Republishing messages whose confirm was lost", fields)
	c.retried(n, reason)
}

// retried tells the Observer, if it is a RetryObserver, that messages are
// sent again.
func (c *publishCall) retried(messages int, reason error) {
	if ro, ok := c.p.cfg.Observer.(RetryObserver); ok {
		ro.Retried(c.topic, messages, reason)
	}
}
