package durablews

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
)

// outgoing is one prepared message of a Publish call.
type outgoing struct {
	idx   int
	msg   *message.Message
	key   string
	pub   amqp.Publishing
	sent  bool // sent at least once: the broker may have it
	nacks int  // times the broker nacked it (Config.RetryNacks)
}

// flight is a sent message awaiting its confirm.
type flight struct {
	out  *outgoing
	dc   *amqp.DeferredConfirmation
	ret  *awaitedReturn // nil unless Mandatory
	sent time.Time
}

// Publish publishes msgs to the exchange mapped to topic and returns nil
// only after the broker confirmed every one of them. Otherwise it returns
// a *PublishError listing the confirmed UUIDs and, for each other message,
// why it was not confirmed (ErrNacked, ErrUnroutable, ErrRefused,
// ErrConfirmTimeout, ErrConnectionLost, ErrInvalidMessage, ErrNotSent,
// ErrUnknownTopic, ErrPublisherClosed or the message context's error).
// The one error that is not a *PublishError is ErrPublisherClosed for a
// call with no messages after Close: there is no message to name. With Config.RetryNacks a nacked message
// is sent again until ConfirmTimeout, and fails with ErrNacked only if the
// broker was still nacking it then.
//
// Publish with no messages returns nil and does nothing, as Watermill
// publishers do. The topic is looked up in Config.Exchanges, then in
// Config.ExchangeFor.
//
// Messages are validated before anything is sent: if one is invalid
// (nil, no routing key, not deliverable to a browser, not persistent,
// a header AMQP cannot carry), none is published. Each message's Context
// is honoured: a cancelled message is not sent, or if already sent, no
// longer waited for.
//
// Every wait, including declaring the exchange and opening a channel on a
// connection the broker blocks, ends when Config.ConfirmTimeout runs out.
// A write still in progress then (a large message to a broker that
// stopped reading: a frozen node, a resource alarm) cannot be cancelled,
// so the publisher drops the connection under it; the message fails with
// ErrNotSent wrapping ErrConfirmTimeout, and the other callers' messages
// whose confirm was lost with it are republished on the next connection.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.closedMu.RLock()
	if p.closed {
		p.closedMu.RUnlock()
		if len(msgs) == 0 {
			return ErrPublisherClosed // no message to name it for
		}
		return p.failAll(topic, msgs, fmt.Errorf("%w: %w", ErrNotSent, ErrPublisherClosed))
	}
	p.calls.Add(1)
	p.closedMu.RUnlock()
	defer p.calls.Done()

	if len(msgs) == 0 {
		return nil // nothing to confirm, as with every Watermill publisher
	}
	if topic == "" {
		return p.failAll(topic, msgs, fmt.Errorf("%w: %w: empty topic: pass one of the configured topics %s", ErrNotSent, ErrUnknownTopic, p.cfg.knownTopics()))
	}
	ex, err := p.cfg.exchangeFor(topic)
	if err != nil {
		return p.failAll(topic, msgs, fmt.Errorf("%w: %w", ErrNotSent, err))
	}

	results := make([]error, len(msgs))
	out, invalid := p.prepare(topic, ex, msgs, results)
	if invalid {
		for i := range results {
			if results[i] == nil {
				results[i] = fmt.Errorf("%w: another message of this batch is invalid, so none was published", ErrNotSent)
			}
		}
		return p.result(topic, msgs, results)
	}

	p.cfg.Observer.Published(topic, len(out))
	dl := p.callDeadline()
	defer func() {
		// Only a deadline stopped before it fired goes back: its
		// channel is empty.
		if dl.stop() {
			p.deadlines.Put(dl)
		}
	}()
	var avoid *session
	channelRetries, notFound := 0, 0
	for len(out) > 0 {
		s, err := p.session(dl.C, avoid)
		if err != nil {
			failOut(out, results, err)
			break
		}
		cc, decl, err := p.exchangeChannel(s, topic, ex, dl.C)
		if errors.Is(err, errReconnect) {
			avoid = s
			continue
		}
		if err != nil {
			failOut(out, results, err)
			break
		}
		retry, nacked, chanErr := p.pipeline(s, cc, topic, ex, out, results, dl)
		if len(nacked) > 0 {
			// "Not now" on a cluster: a quorum queue without a leader.
			p.retried(topic, len(nacked), ErrNacked)
			if err := p.sleep(nackBackoff(nacked), dl.C); err != nil {
				failNacked(nacked, results, err)
				failOut(retry, results, err)
				break
			}
		}
		out = append(retry, nacked...)
		if len(out) == 0 {
			break
		}
		if len(retry) == 0 {
			avoid = nil // only nacks: the same connection if it lives
			continue
		}
		if chanErr != nil && chanErr.Server && isChannelException(chanErr.Code) {
			failOut(out, results, refusedError(ex, chanErr))
			break
		}
		p.logRepublish(topic, retry, chanErr)
		if s.dead() {
			avoid = s
			continue
		}
		if chanErr != nil && chanErr.Code == amqp.NotFound {
			// The exchange was deleted under us: declare (or check) it
			// again. While the broker is still deleting it, it answers a
			// declare without acting on it (rabbit_exchange:declare), so
			// the exchange can be gone again: back off, until the deadline.
			s.forget(ex.Name, decl)
			p.logger.Info("Exchange gone; declaring it again", watermill.LogFields{"topic": topic, "exchange": ex.Name, "passive": ex.Passive})
			if notFound > 0 {
				if err := p.sleep(10*time.Millisecond<<min(notFound-1, 6), dl.C); err != nil {
					failOut(out, results, fmt.Errorf("%w: exchange %q kept disappearing: %v", err, ex.Name, chanErr))
					break
				}
			}
			notFound++
			avoid = nil
			continue
		}
		if chanErr == nil {
			// The broker gave no reason: the channel failed with the
			// connection. After a failed write amqp091-go shuts the
			// connection down in another goroutine, so s.dead() can
			// still be false here; retrying at once would spend the
			// channel retries in microseconds (measured on the cluster
			// chaos test: hundreds of messages failed "channel closed 4
			// times" right at a cut). Wait until the connection is
			// declared lost, or briefly, then try again.
			if err := p.sleepUnless(100*time.Millisecond, s.lost, dl.C); err != nil {
				failOut(out, results, err)
				break
			}
			avoid = nil
			continue
		}
		channelRetries++
		if channelRetries > maxChannelRetries {
			failOut(out, results, fmt.Errorf("%w: channel closed %d times: %v", ErrConnectionLost, channelRetries, chanErr))
			break
		}
		avoid = nil
	}
	return p.result(topic, msgs, results)
}

// sleep waits d, or returns ErrConfirmTimeout at the deadline or
// ErrPublisherClosed on Close.
func (p *Publisher) sleep(d time.Duration, deadline <-chan time.Time) error {
	return p.sleepUnless(d, nil, deadline)
}

// sleepUnless is sleep that also ends, without error, when wake closes.
func (p *Publisher) sleepUnless(d time.Duration, wake <-chan struct{}, deadline <-chan time.Time) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-wake:
		return nil
	case <-deadline:
		return ErrConfirmTimeout
	case <-p.closing:
		return ErrPublisherClosed
	}
}

// logRepublish logs, at debug, that messages whose confirm was lost with a
// channel or the connection are about to be sent again, and tells a
// RetryObserver.
func (p *Publisher) logRepublish(topic string, out []outgoing, chanErr *amqp.Error) {
	n := 0
	for _, o := range out {
		if o.sent {
			n++
		}
	}
	if n == 0 {
		return
	}
	fields := watermill.LogFields{"topic": topic, "messages": n}
	reason := ErrConnectionLost
	if chanErr != nil {
		fields["reason"] = chanErr.Error()
		reason = fmt.Errorf("%w: %w", ErrConnectionLost, chanErr)
	}
	p.logger.Debug("Republishing messages whose confirm was lost", fields)
	p.retried(topic, n, reason)
}

// retried tells the Observer, if it is a RetryObserver, that messages are
// sent again.
func (p *Publisher) retried(topic string, messages int, reason error) {
	if ro, ok := p.cfg.Observer.(RetryObserver); ok {
		ro.Retried(topic, messages, reason)
	}
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

// failNacked ends nacked messages that will not be sent again: err says
// why (ErrConfirmTimeout: the deadline came first; ErrPublisherClosed).
func failNacked(nacked []outgoing, results []error, err error) {
	for _, o := range nacked {
		why := "Config.ConfirmTimeout ran out before the broker took it"
		if !errors.Is(err, ErrConfirmTimeout) {
			why = "not retried: " + err.Error()
		}
		results[o.idx] = fmt.Errorf("%w (%d times; %s)", ErrNacked, o.nacks, why)
	}
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

// errReconnect marks a round trip that failed because the connection is
// gone: retry on the next one.
var errReconnect = errors.New("connection lost")

// errDeadline: the call's Config.ConfirmTimeout ran out.
var errDeadline = errors.New("deadline")

// exchangeChannel declares (or checks) ex on s if not done yet and returns
// a confirm channel for it, opening one if needed; both within the call's
// deadline. It also returns the declaration it relied on.
func (p *Publisher) exchangeChannel(s *session, topic string, ex Exchange, deadline <-chan time.Time) (*confirmChannel, *rpc, error) {
	decl := s.declaration(topic, ex)
	if err := p.await(s, decl, deadline); err != nil {
		return nil, nil, roundTripError(s, err, fmt.Sprintf("declaring exchange %q", ex.Name))
	}
	for {
		cc, opening := s.channel(ex.Name)
		if cc != nil {
			return cc, decl, nil
		}
		if err := p.await(s, opening, deadline); err != nil {
			return nil, nil, roundTripError(s, err, "opening a confirm channel")
		}
	}
}

// await waits for r until the deadline, or until Close while the broker
// blocks the connection (then nothing will end the wait sooner).
func (p *Publisher) await(s *session, r *rpc, deadline <-chan time.Time) error {
	for {
		blocked, changed := s.blockState()
		var closing <-chan struct{}
		if blocked {
			closing = p.closing
		}
		select {
		case <-r.done:
			return r.err
		case <-changed:
		case <-closing:
			return ErrPublisherClosed
		case <-deadline:
			return errDeadline
		}
	}
}

// roundTripError says what became of a declare or channel open on s.
func roundTripError(s *session, err error, what string) error {
	blocked, _ := s.blockState()
	hint := ""
	if blocked {
		hint = " (the broker blocks the connection: a memory or disk alarm)"
	}
	switch {
	case errors.Is(err, errDeadline):
		return fmt.Errorf("%w: %s got no answer from the broker%s", ErrConfirmTimeout, what, hint)
	case errors.Is(err, ErrPublisherClosed):
		return fmt.Errorf("%w while %s%s", ErrPublisherClosed, what, hint)
	case s.lostConnection(err):
		return fmt.Errorf("%w: %s: %w", errReconnect, what, err)
	}
	return err
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

// prepare validates and marshals every message. It records failures in
// results and reports whether any message was invalid.
func (p *Publisher) prepare(topic string, ex Exchange, msgs []*message.Message, results []error) ([]outgoing, bool) {
	out := make([]outgoing, 0, len(msgs))
	invalid := false
	_, ownHeaders := p.cfg.Marshaler.(DefaultMarshaler) // a new table per message
	for i, msg := range msgs {
		fail := func(err error) {
			results[i] = fmt.Errorf("%w: %w", ErrInvalidMessage, err)
			invalid = true
		}
		if msg == nil {
			fail(errors.New("message is nil"))
			continue
		}
		key, err := p.cfg.routingKey(topic, ex, msg)
		if err != nil {
			fail(fmt.Errorf("%w: %w", ErrRoutingKey, err))
			continue
		}
		if err := p.cfg.validateForBrowser(msg); err != nil {
			fail(err)
			continue
		}
		pub, err := p.cfg.Marshaler.Marshal(msg)
		if err != nil {
			fail(fmt.Errorf("marshal: %w", err))
			continue
		}
		if pub.MessageId == "" {
			pub.MessageId = msg.UUID
		}
		if pub.MessageId == "" {
			fail(errors.New("message has no UUID: create it with message.NewMessage(watermill.NewUUID(), payload)"))
			continue
		}
		if err := checkPublishing(pub); err != nil {
			fail(fmt.Errorf("Config.Marshaler: %w", err))
			continue
		}
		if p.cfg.Mandatory && !ownHeaders {
			// The publish token is set in the headers: a custom
			// marshaler may share one table between messages.
			pub.Headers = maps.Clone(pub.Headers)
		}
		out = append(out, outgoing{idx: i, msg: msg, key: key, pub: pub})
	}
	return out, invalid
}

// pipeline sends out on cc with many messages in flight and collects their
// confirms in order. It returns the messages to send again on another
// channel (their confirm was lost with cc or the connection, or cc closed
// before they were sent), those the broker nacked when Config.RetryNacks
// is on, and, when the broker closed cc, why.
func (p *Publisher) pipeline(s *session, cc *confirmChannel, topic string, ex Exchange, out []outgoing, results []error, dl *callDeadline) (retry, nacked []outgoing, chanErr *amqp.Error) {
	queue := make([]flight, 0, min(len(out), p.cfg.MaxInFlight))
	release := func() { <-p.slots }
	next := 0
	for next < len(out) || len(queue) > 0 {
		if next < len(out) && cc.isClosed() {
			// Whatever closed it (a deleted exchange: 404) would close the
			// next channel too; the caller finds out and retries.
			retry = append(retry, out[next:]...)
			next = len(out)
			continue
		}
		blocked, changed := s.blockState()
		var acquire chan struct{}
		if next < len(out) && !blocked {
			acquire = p.slots
		}
		var closing <-chan struct{}
		if blocked {
			closing = p.closing // nothing moves until the alarm clears
		}
		var oldestDone, oldestCtx <-chan struct{}
		if len(queue) > 0 {
			oldestDone = queue[0].dc.Done()
			oldestCtx = queue[0].out.msg.Context().Done()
		}
		select {
		case acquire <- struct{}{}:
			o := &out[next]
			next++
			if err := o.msg.Context().Err(); err != nil {
				release()
				results[o.idx] = fmt.Errorf("%w: message context done before sending: %w", ErrNotSent, err)
				continue
			}
			if !dl.beginWrite(s) {
				// The deadline ran out; it is waiting in dl.C.
				release()
				next--
				continue
			}
			dc, ret, err := cc.publish(ex.Name, o.key, p.cfg.Mandatory, o.pub)
			dl.endWrite(s)
			if err != nil && dl.fired.Load() {
				// The deadline dropped the connection under a stuck write.
				release()
				results[o.idx] = fmt.Errorf("%w: %w: %s; the broker did not get the whole message", ErrNotSent, ErrConfirmTimeout, stalledWriteReason)
				failNacked(nacked, results, ErrConfirmTimeout)
				p.abandon(cc, queue, out[next:], retry, results, ErrConfirmTimeout, "")
				return nil, nil, nil
			}
			if err != nil {
				// Messages are checked before sending, so this is the
				// channel or the connection failing.
				release()
				retry = append(retry, *o)
				retry = append(retry, out[next:]...)
				next = len(out)
				continue
			}
			o.sent = true
			queue = append(queue, flight{out: o, dc: dc, ret: ret, sent: time.Now()})
		case <-changed:
		case <-oldestDone:
			f := queue[0]
			queue = queue[1:]
			release()
			r := cc.settle(f.ret)
			switch {
			case f.dc.Acked() && r != nil:
				results[f.out.idx] = fmt.Errorf("%w (%d %s, exchange %q, routing key %q)", ErrUnroutable, r.ReplyCode, r.ReplyText, r.Exchange, r.RoutingKey)
			case f.dc.Acked():
				p.cfg.Observer.Confirmed(topic, time.Since(f.sent))
			case cc.isClosed():
				// amqp091-go completes every pending confirm with ack=false
				// when its channel closes; that is no nack, the confirm is
				// just lost.
				retry = append(retry, *f.out)
				if e := cc.closeReason(); e != nil {
					chanErr = e
				}
			case p.cfg.RetryNacks:
				f.out.nacks++
				nacked = append(nacked, *f.out)
			default:
				results[f.out.idx] = ErrNacked
			}
		case <-oldestCtx:
			f := queue[0]
			queue = queue[1:]
			release()
			cc.abandon(f.ret)
			results[f.out.idx] = fmt.Errorf("message context done before the confirm (the broker may still deliver it): %w", f.out.msg.Context().Err())
		case <-closing:
			failNacked(nacked, results, ErrPublisherClosed)
			p.abandon(cc, queue, out[next:], retry, results, ErrPublisherClosed, "closed while the broker blocked the connection")
			return nil, nil, nil
		case <-dl.C:
			failNacked(nacked, results, ErrConfirmTimeout)
			p.abandon(cc, queue, out[next:], retry, results, ErrConfirmTimeout, "")
			return nil, nil, nil
		}
	}
	if chanErr == nil && cc.isClosed() {
		chanErr = cc.closeReason() // closed before any confirm of ours told us why
	}
	return retry, nacked, chanErr
}

// abandon ends a pipeline early with reason: the messages in flight get
// reason, the others reason wrapped by ErrNotSent unless a confirm of
// theirs was lost before (the broker may have them).
func (p *Publisher) abandon(cc *confirmChannel, queue []flight, unsent, retry []outgoing, results []error, reason error, detail string) {
	err := reason
	if detail != "" {
		err = fmt.Errorf("%w: %s", reason, detail)
	}
	for _, f := range queue {
		<-p.slots
		cc.abandon(f.ret)
		results[f.out.idx] = fmt.Errorf("%w (the broker may still deliver it)", err)
	}
	failOut(unsent, results, err)
	failOut(retry, results, err)
}

// failAll fails every message of a call with err.
func (p *Publisher) failAll(topic string, msgs []*message.Message, err error) error {
	results := make([]error, len(msgs))
	for i := range results {
		results[i] = err
	}
	return p.result(topic, msgs, results)
}

func (p *Publisher) result(topic string, msgs []*message.Message, results []error) error {
	// The common case, all confirmed, builds no PublishError.
	var pe *PublishError
	for i, err := range results {
		if err == nil {
			continue
		}
		p.cfg.Observer.NotConfirmed(topic, err)
		if pe == nil {
			pe = &PublishError{Topic: topic}
		}
		f := MessageError{Index: i, Err: err}
		if msgs[i] != nil {
			f.UUID = msgs[i].UUID
		}
		pe.Failed = append(pe.Failed, f)
	}
	if pe == nil {
		if p.trace {
			p.logger.Trace("Published and confirmed", watermill.LogFields{"topic": topic, "messages": len(msgs)})
		}
		return nil
	}
	for i, err := range results {
		if err == nil {
			pe.Confirmed = append(pe.Confirmed, msgs[i].UUID)
		}
	}
	return pe
}

// failOut ends messages that are not in flight with err. One never sent
// also gets ErrNotSent; one sent before lost its confirm with a channel or
// the connection, and the broker may have it.
func failOut(out []outgoing, results []error, err error) {
	for _, o := range out {
		if o.sent {
			e := err
			if !errors.Is(e, ErrConfirmTimeout) && !errors.Is(e, ErrConnectionLost) && !errors.Is(e, ErrPublisherClosed) && !errors.Is(e, ErrRefused) {
				e = fmt.Errorf("%w, not republished: %w", ErrConnectionLost, e)
			}
			results[o.idx] = fmt.Errorf("%w (its confirm was lost with a channel or the connection; the broker may have it)", e)
		} else {
			results[o.idx] = fmt.Errorf("%w: %w", ErrNotSent, err)
		}
	}
}
