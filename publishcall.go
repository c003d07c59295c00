package durablews

import (
	"errors"
	"fmt"
	"time"
)

// publishCall is one Publish call on its way to the broker: where it
// publishes, its deadline, the outcome of each message, and what the
// retry decision (next, retrydecision.go) remembers between passes.
type publishCall struct {
	p       *Publisher
	topic   string
	ex      Exchange
	results []error // per message of the call: its failure; nil: confirmed, or not settled yet
	dl      *callDeadline

	avoid          *connection // found dead by the last pass: wait for the next one
	channelRetries int         // passes that ended with the channel closed for another reason
	notFound       int         // passes that found the exchange deleted (404)
}

// callDeadline returns a deadline running for Config.ConfirmTimeout.
// Deadlines stopped before they fired are pooled, so a one-message
// Publish does not allocate one each time.
func (p *Publisher) callDeadline() *callDeadline {
	if d, ok := p.deadlines.Get().(*callDeadline); ok {
		d.reset(p.cfg.ConfirmTimeout)
		return d
	}
	return newCallDeadline(p.cfg.ConfirmTimeout)
}

// end releases the call's deadline.
func (c *publishCall) end() {
	// Only a deadline stopped before it fired goes back: its channel is
	// empty.
	if c.dl.stop() {
		c.p.deadlines.Put(c.dl)
	}
}

// pass sends out once, over a live connection and a confirm channel of
// the exchange, and returns the messages for the next pass: none when
// each has its outcome in results.
func (c *publishCall) pass(out []outgoing) []outgoing {
	conn, err := c.p.liveConnection(c.dl.C, c.avoid)
	if err != nil {
		failOut(out, c.results, err)
		return nil
	}
	cc, decl, err := c.channelFor(conn)
	if errors.Is(err, errReconnect) {
		c.avoid = conn
		return out
	}
	if err != nil {
		failOut(out, c.results, err)
		return nil
	}
	pl := pipeline{p: c.p, topic: c.topic, exchange: c.ex.Name, results: c.results, dl: c.dl, conn: conn, cc: cc}
	pl.run(out)
	if pl.ended {
		return nil
	}
	return c.next(conn, decl, pl.retry, pl.nacked, pl.chanErr)
}

// errReconnect marks a round trip that failed because the connection is
// gone: retry on the next one.
var errReconnect = errors.New("connection lost")

// errDeadline: the call's Config.ConfirmTimeout ran out.
var errDeadline = errors.New("deadline")

// channelFor declares (or checks) the call's exchange on conn if not done
// yet and returns one of its confirm channels, opening it if needed; both
// within the call's deadline. It also returns the declaration it relied
// on.
func (c *publishCall) channelFor(conn *connection) (*confirmChannel, *roundTrip, error) {
	decl := conn.declaration(c.topic, c.ex)
	if err := c.await(conn, decl); err != nil {
		return nil, nil, roundTripError(conn, err, fmt.Sprintf("declaring exchange %q", c.ex.Name))
	}
	for {
		cc, opening := conn.confirmChannel(c.ex.Name)
		if cc != nil {
			return cc, decl, nil
		}
		if err := c.await(conn, opening); err != nil {
			return nil, nil, roundTripError(conn, err, "opening a confirm channel")
		}
	}
}

// await waits for r until the deadline, or until Close while the broker
// blocks the connection (then nothing will end the wait sooner).
func (c *publishCall) await(conn *connection, r *roundTrip) error {
	for {
		blocked, changed := conn.blockState()
		var closing <-chan struct{}
		if blocked {
			closing = c.p.closing
		}
		select {
		case <-r.done:
			return r.err
		case <-changed:
		case <-closing:
			return ErrPublisherClosed
		case <-c.dl.C:
			return errDeadline
		}
	}
}

// roundTripError says what became of a declare or channel open on conn.
func roundTripError(conn *connection, err error, what string) error {
	blocked, _ := conn.blockState()
	hint := ""
	if blocked {
		hint = " (the broker blocks the connection: a memory or disk alarm)"
	}
	switch {
	case errors.Is(err, errDeadline):
		return fmt.Errorf("%w: %s got no answer from the broker%s", ErrConfirmTimeout, what, hint)
	case errors.Is(err, ErrPublisherClosed):
		return fmt.Errorf("%w while %s%s", ErrPublisherClosed, what, hint)
	case conn.lostConnection(err):
		return fmt.Errorf("%w: %s: %w", errReconnect, what, err)
	}
	return err
}

// sleep waits d, or returns ErrConfirmTimeout at the deadline or
// ErrPublisherClosed on Close.
func (c *publishCall) sleep(d time.Duration) error { return c.sleepUnless(d, nil) }

// sleepUnless is sleep that also ends, without error, when wake closes.
func (c *publishCall) sleepUnless(d time.Duration, wake <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-wake:
		return nil
	case <-c.dl.C:
		return ErrConfirmTimeout
	case <-c.p.closing:
		return ErrPublisherClosed
	}
}
