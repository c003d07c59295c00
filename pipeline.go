package durablews

import (
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// pipeline is one pass of a Publish call over one confirm channel: it
// sends the call's messages with many in flight, each holding one of the
// Publisher's Config.MaxInFlight slots, and takes their confirms in publish
// order. What it could not settle it leaves to the call's retry decision
// (publishCall.next).
type pipeline struct {
	p        *Publisher
	topic    string
	exchange string
	results  []error       // the call's
	dl       *callDeadline // the call's
	conn     *connection
	cc       *confirmChannel

	unconfirmed []sentMessage // sent, awaiting their confirm, oldest first
	ended       bool          // ended early (deadline, Close): every message has its outcome

	// For the next pass:
	retry   []outgoing  // their confirm was lost with the channel or the connection, or it closed before they were sent
	nacked  []outgoing  // nacked, with Config.RetryNacks
	chanErr *amqp.Error // why the broker closed the channel, if it did
}

// run sends out and waits for their confirms, until each has an outcome
// in the call's results or is left in retry or nacked.
func (pl *pipeline) run(out []outgoing) {
	p := pl.p
	pl.unconfirmed = make([]sentMessage, 0, min(len(out), p.cfg.MaxInFlight))
	next := 0
	for next < len(out) || len(pl.unconfirmed) > 0 {
		if next < len(out) && pl.cc.isClosed() {
			// Whatever closed it (a deleted exchange: 404) would close the
			// next channel too; the retry decision finds out.
			pl.retry = append(pl.retry, out[next:]...)
			next = len(out)
			continue
		}
		blocked, changed := pl.conn.blockState()
		var acquire chan struct{}
		if next < len(out) && !blocked {
			acquire = p.slots
		}
		var closing <-chan struct{}
		if blocked {
			closing = p.closing // nothing moves until the alarm clears
		}
		var oldestDone, oldestCtx <-chan struct{}
		if len(pl.unconfirmed) > 0 {
			oldestDone = pl.unconfirmed[0].dc.Done()
			oldestCtx = pl.unconfirmed[0].out.msg.Context().Done()
		}
		select {
		case acquire <- struct{}{}:
			next = pl.send(out, next)
		case <-changed:
		case <-oldestDone:
			pl.confirmed()
		case <-oldestCtx:
			pl.contextDone()
		case <-closing:
			pl.endEarly(out[next:], ErrPublisherClosed, "closed while the broker blocked the connection")
		case <-pl.dl.C:
			pl.endEarly(out[next:], ErrConfirmTimeout, "")
		}
		if pl.ended {
			return
		}
	}
	if pl.chanErr == nil && pl.cc.isClosed() {
		pl.chanErr = pl.cc.closeReason() // closed before any confirm of ours told us why
	}
}

// release frees the in-flight slot of a message.
func (pl *pipeline) release() { <-pl.p.slots }

// send sends out[next], which holds a slot just taken, and returns the
// index of the next message to send.
func (pl *pipeline) send(out []outgoing, next int) int {
	o := &out[next]
	results, dl := pl.results, pl.dl
	if err := o.msg.Context().Err(); err != nil {
		pl.release()
		results[o.idx] = fmt.Errorf("%w: message context done before sending: %w", ErrNotSent, err)
		return next + 1
	}
	if !dl.beginWrite(pl.conn) {
		pl.release()
		return next // the deadline ran out: it waits in dl.C
	}
	dc, ret, err := pl.cc.publish(pl.exchange, o.key, pl.p.cfg.Mandatory, o.pub)
	dl.endWrite(pl.conn)
	switch {
	case err != nil && dl.fired.Load():
		// The deadline dropped the connection under a stuck write.
		pl.release()
		results[o.idx] = fmt.Errorf("%w: %w: %s; the broker did not get the whole message", ErrNotSent, ErrConfirmTimeout, stalledWriteReason)
		pl.endEarly(out[next+1:], ErrConfirmTimeout, "")
		return len(out)
	case err != nil:
		// Messages are checked before sending, so this is the channel or
		// the connection failing.
		pl.release()
		pl.retry = append(pl.retry, out[next:]...)
		return len(out)
	}
	o.sent = true
	pl.unconfirmed = append(pl.unconfirmed, sentMessage{out: o, dc: dc, ret: ret, sent: time.Now()})
	return next + 1
}

// confirmed settles the oldest unconfirmed message, whose confirm came.
func (pl *pipeline) confirmed() {
	f := pl.unconfirmed[0]
	pl.unconfirmed = pl.unconfirmed[1:]
	pl.release()
	results := pl.results
	r := pl.cc.returns.take(f.ret)
	switch {
	case f.dc.Acked() && r != nil:
		results[f.out.idx] = fmt.Errorf("%w (%d %s, exchange %q, routing key %q)", ErrUnroutable, r.ReplyCode, r.ReplyText, r.Exchange, r.RoutingKey)
	case f.dc.Acked():
		pl.p.cfg.Observer.Confirmed(pl.topic, time.Since(f.sent))
	case pl.cc.isClosed():
		// amqp091-go completes every pending confirm with ack=false when
		// its channel closes; that is no nack, the confirm is just lost.
		pl.retry = append(pl.retry, *f.out)
		if e := pl.cc.closeReason(); e != nil {
			pl.chanErr = e
		}
	case pl.p.cfg.RetryNacks:
		f.out.nacks++
		pl.nacked = append(pl.nacked, *f.out)
	default:
		results[f.out.idx] = ErrNacked
	}
}

// contextDone gives up on the oldest unconfirmed message, whose context
// ended.
func (pl *pipeline) contextDone() {
	f := pl.unconfirmed[0]
	pl.unconfirmed = pl.unconfirmed[1:]
	pl.release()
	pl.cc.returns.forget(f.ret)
	pl.results[f.out.idx] = fmt.Errorf("message context done before the confirm (the broker may still deliver it): %w", f.out.msg.Context().Err())
}

// endEarly ends the pass, and the call, with reason (the deadline, or
// Close): the messages in flight get reason, the others reason wrapped by
// ErrNotSent unless a confirm of theirs was lost before (the broker may
// have them).
func (pl *pipeline) endEarly(unsent []outgoing, reason error, detail string) {
	results := pl.results
	err := reason
	if detail != "" {
		err = fmt.Errorf("%w: %s", reason, detail)
	}
	failNacked(pl.nacked, results, reason)
	for _, f := range pl.unconfirmed {
		pl.release()
		pl.cc.returns.forget(f.ret)
		results[f.out.idx] = fmt.Errorf("%w (the broker may still deliver it)", err)
	}
	failOut(unsent, results, err)
	failOut(pl.retry, results, err)
	pl.unconfirmed, pl.retry, pl.nacked, pl.chanErr = nil, nil, nil, nil
	pl.ended = true
}
