package durablews

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
)

// maxChannelRetries bounds how often one Publish call republishes after a
// channel (not connection) error, so a persistent channel error ends in a
// clear error instead of a loop until ConfirmTimeout.
const maxChannelRetries = 3

// Publisher publishes Watermill messages to RabbitMQ exchanges and returns
// only after the broker confirmed every message. It implements
// message.Publisher and is safe for concurrent use.
//
// All messages of a Publish call are in flight at once (up to
// Config.MaxInFlight across all callers) and concurrent callers share the
// connection's confirm channels, so throughput is bounded by the broker
// rather than by round trips.
//
// When the connection is lost, the publisher reconnects in the background
// with back-off, moving on to the next of Config.URLs. Messages whose
// confirm was lost with the connection are republished on the new
// connection (at-least-once: the browser client drops the duplicate by its
// amqp-message-id) until Config.ConfirmTimeout runs out; then Publish
// returns an error naming them. Nothing is dropped silently.
type Publisher struct {
	cfg    Config
	logger watermill.LoggerAdapter
	// trace: the logger is not a NopLogger, so a per-call Trace line is
	// worth its LogFields map (with NopLogger it would only allocate).
	trace bool

	mu    sync.Mutex
	sess  *session      // current session; may be lost while reconnecting
	ready chan struct{} // closed when the next session is installed
	gen   uint64

	slots  chan struct{} // in-flight semaphore, one token per unconfirmed message
	timers sync.Pool     // *time.Timer for ConfirmTimeout, reused across calls

	closedMu sync.RWMutex
	closed   bool
	calls    sync.WaitGroup // Publish calls in progress
	closing  chan struct{}
	runDone  chan struct{}
	closeErr error
	once     sync.Once
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher connects to the first reachable broker of config.URLs and
// returns a Publisher. It fails fast: if no broker answers it returns an
// error naming each URL and why, and starts nothing. A nil logger logs
// nothing.
func NewPublisher(config Config, logger watermill.LoggerAdapter) (*Publisher, error) {
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	_, nop := logger.(watermill.NopLogger)
	logger = logger.With(watermill.LogFields{"component": "durablews.Publisher"})
	p := &Publisher{
		cfg:     config,
		logger:  logger,
		trace:   !nop,
		ready:   make(chan struct{}),
		slots:   make(chan struct{}, config.MaxInFlight),
		closing: make(chan struct{}),
		runDone: make(chan struct{}),
	}
	var errs []string
	for i, u := range config.URLs {
		s, err := dialSession(&p.cfg, u, 1, logger)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		p.sess, p.gen = s, 1
		logger.Info("Connected to broker", watermill.LogFields{"url": redactURL(u)})
		go p.run(i)
		return p, nil
	}
	return nil, fmt.Errorf("durablews: cannot connect to any broker (is RabbitMQ running and are the credentials right? `make broker` starts a local one): %s", strings.Join(errs, "; "))
}

// run replaces a lost session with a new one, with back-off, rotating
// through the URLs, until Close.
func (p *Publisher) run(urlIdx int) {
	defer close(p.runDone)
	for {
		p.mu.Lock()
		s := p.sess
		p.mu.Unlock()
		select {
		case <-s.lost:
		case <-p.closing:
			return
		}
		p.logger.Error("Connection to broker lost; reconnecting", errors.New(s.lostReason()), watermill.LogFields{"url": redactURL(s.url)})
		s.close()
		for attempt := 0; ; attempt++ {
			delay := p.cfg.Reconnect.Delay(attempt)
			delay = delay/2 + rand.N(delay/2+1) // jitter, so a fleet does not reconnect in lockstep
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-p.closing:
				t.Stop()
				return
			}
			urlIdx = (urlIdx + 1) % len(p.cfg.URLs)
			u := p.cfg.URLs[urlIdx]
			ns, err := dialSession(&p.cfg, u, p.gen+1, p.logger)
			if err != nil {
				p.logger.Error("Reconnect failed", err, watermill.LogFields{"attempt": attempt + 1, "retry_in": p.cfg.Reconnect.Delay(attempt + 1).String()})
				continue
			}
			p.mu.Lock()
			p.gen++
			p.sess = ns
			close(p.ready)
			p.ready = make(chan struct{})
			p.mu.Unlock()
			p.logger.Info("Reconnected to broker", watermill.LogFields{"url": redactURL(u), "attempts": attempt + 1})
			p.cfg.Observer.Reconnected(redactURL(u))
			break
		}
	}
}

// session returns a live session other than avoid, waiting for a reconnect
// if needed, until deadline or Close.
func (p *Publisher) session(deadline <-chan time.Time, avoid *session) (*session, error) {
	for {
		p.mu.Lock()
		s, ready := p.sess, p.ready
		p.mu.Unlock()
		if s != avoid && !s.dead() {
			return s, nil
		}
		select {
		case <-ready:
		case <-deadline:
			return nil, fmt.Errorf("%w: still reconnecting when Config.ConfirmTimeout ran out (%s)", ErrConnectionLost, s.lostReason())
		case <-p.closing:
			return nil, ErrPublisherClosed
		}
	}
}

// outgoing is one prepared message of a Publish call.
type outgoing struct {
	idx int
	msg *message.Message
	key string
	pub amqp.Publishing
}

// flight is a sent message awaiting its confirm.
type flight struct {
	out  *outgoing
	cc   *confirmChannel
	dc   *amqp.DeferredConfirmation
	sent time.Time
}

// Publish publishes msgs to the exchange mapped to topic and returns nil
// only after the broker confirmed every one of them. Otherwise it returns
// a *PublishError listing the confirmed UUIDs and, for each other message,
// why it was not confirmed (ErrNacked, ErrUnroutable, ErrConfirmTimeout,
// ErrConnectionLost, ErrInvalidMessage, ErrNotSent, ErrPublisherClosed or
// the message context's error).
//
// Publish with no messages returns nil and does nothing, as Watermill
// publishers do. The topic is looked up in Config.Exchanges, then in
// Config.ExchangeFor.
//
// Messages are validated before anything is sent: if one is invalid
// (nil, no routing key, not deliverable to a browser), none is published.
// Each message's Context is honoured: a cancelled message is not sent, or
// if already sent, no longer waited for.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.closedMu.RLock()
	if p.closed {
		p.closedMu.RUnlock()
		return ErrPublisherClosed
	}
	p.calls.Add(1)
	p.closedMu.RUnlock()
	defer p.calls.Done()

	if len(msgs) == 0 {
		return nil // nothing to confirm, as with every Watermill publisher
	}
	if topic == "" {
		return fmt.Errorf("durablews: empty topic: pass one of the configured topics %s", p.cfg.knownTopics())
	}
	ex, err := p.cfg.exchangeFor(topic)
	if err != nil {
		return err
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
	timer := p.confirmTimer()
	defer func() {
		// Only a timer stopped before it fired goes back: its channel is
		// empty whatever the GODEBUG asynctimerchan setting.
		if timer.Stop() {
			p.timers.Put(timer)
		}
	}()
	var avoid *session
	channelRetries := 0
	for len(out) > 0 {
		s, err := p.session(timer.C, avoid)
		if err != nil {
			failAll(out, results, err)
			break
		}
		if err := s.declare(context.Background(), topic, ex); err != nil {
			if errors.Is(err, ErrConnectionLost) && !errors.Is(err, ErrPublisherClosed) {
				avoid = s
				continue
			}
			failAll(out, results, fmt.Errorf("%w: %v", ErrNotSent, err))
			break
		}
		retry, connLost, chanErr := p.pipeline(s, topic, ex, out, results, timer.C)
		out = retry
		switch {
		case len(out) == 0:
		case connLost:
			avoid = s
		default:
			channelRetries++
			if channelRetries > maxChannelRetries {
				failAll(out, results, fmt.Errorf("%w: channel closed %d times: %v", ErrConnectionLost, channelRetries, chanErr))
				out = nil
			}
			avoid = nil
		}
	}
	return p.result(topic, msgs, results)
}

// confirmTimer returns a timer running for Config.ConfirmTimeout. Timers
// stopped before they fired are pooled, so a one-message Publish does not
// allocate a timer each time.
func (p *Publisher) confirmTimer() *time.Timer {
	if t, ok := p.timers.Get().(*time.Timer); ok {
		t.Reset(p.cfg.ConfirmTimeout)
		return t
	}
	return time.NewTimer(p.cfg.ConfirmTimeout)
}

// prepare validates and marshals every message. It records failures in
// results and reports whether any message was invalid.
func (p *Publisher) prepare(topic string, ex Exchange, msgs []*message.Message, results []error) ([]outgoing, bool) {
	out := make([]outgoing, 0, len(msgs))
	invalid := false
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
		out = append(out, outgoing{idx: i, msg: msg, key: key, pub: pub})
	}
	return out, invalid
}

// pipeline sends out on s with many messages in flight and collects their
// confirms in order. It returns the messages to republish (their confirm
// was lost with a channel or the connection) and whether the connection
// itself was lost.
func (p *Publisher) pipeline(s *session, topic string, ex Exchange, out []outgoing, results []error, deadline <-chan time.Time) (retry []outgoing, connLost bool, chanErr error) {
	queue := make([]flight, 0, min(len(out), p.cfg.MaxInFlight))
	release := func() { <-p.slots }
	resend := func(o *outgoing, err error) {
		retry = append(retry, *o)
		if s.dead() {
			connLost = true
		} else {
			chanErr = err
		}
	}
	var cc *confirmChannel
	var err error
	next := 0
	for next < len(out) || len(queue) > 0 {
		var acquire chan struct{}
		var unblocked <-chan struct{}
		if next < len(out) {
			if unblocked = s.whenUnblocked(); unblocked == nil {
				acquire = p.slots
			}
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
			// One channel per call keeps the batch in order on the broker.
			if cc == nil || cc.isClosed() {
				if cc, err = s.pick(); err != nil {
					release()
					resend(o, err)
					continue
				}
			}
			dc, err := cc.ch.PublishWithDeferredConfirm(ex.Name, o.key, p.cfg.Mandatory, false, o.pub)
			if err != nil || dc == nil {
				release()
				resend(o, fmt.Errorf("publish: %v", err))
				continue
			}
			queue = append(queue, flight{out: o, cc: cc, dc: dc, sent: time.Now()})
		case <-unblocked:
		case <-oldestDone:
			f := queue[0]
			queue = queue[1:]
			release()
			if err := p.outcome(s, topic, f); err != nil {
				if errors.Is(err, errResend) {
					resend(f.out, err)
					continue
				}
				results[f.out.idx] = err
			} else {
				p.cfg.Observer.Confirmed(topic, time.Since(f.sent))
			}
		case <-oldestCtx:
			f := queue[0]
			queue = queue[1:]
			release()
			results[f.out.idx] = fmt.Errorf("message context done before the confirm (the broker may still deliver it): %w", f.out.msg.Context().Err())
		case <-deadline:
			for _, f := range queue {
				release()
				results[f.out.idx] = ErrConfirmTimeout
			}
			for _, o := range out[next:] {
				results[o.idx] = fmt.Errorf("%w: %w before it could be sent", ErrNotSent, ErrConfirmTimeout)
			}
			for _, o := range retry {
				results[o.idx] = fmt.Errorf("%w after its confirm was lost with the channel", ErrConfirmTimeout)
			}
			return nil, false, nil
		}
	}
	return retry, connLost, chanErr
}

// errResend marks a confirm lost with its channel: republish the message.
var errResend = errors.New("confirm lost with the channel")

// outcome turns a completed deferred confirmation into nil (confirmed),
// errResend, or the message's error.
func (p *Publisher) outcome(s *session, topic string, f flight) error {
	if f.dc.Acked() {
		if r, returned := f.cc.claimReturn(f.out.pub.MessageId); returned {
			return fmt.Errorf("%w (%d %s, exchange %q, routing key %q)", ErrUnroutable, r.ReplyCode, r.ReplyText, r.Exchange, r.RoutingKey)
		}
		return nil
	}
	if f.cc.isClosed() {
		// amqp091-go completes every pending confirm with ack=false when
		// its channel closes; that is no nack, the confirm is just lost.
		if e := f.cc.closeReason(); e != nil && e.Code == amqp.NotFound {
			s.forget(topic) // exchange deleted under us: declare it again
		}
		return errResend
	}
	return ErrNacked
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

func failAll(out []outgoing, results []error, err error) {
	for _, o := range out {
		results[o.idx] = err
	}
}

// InFlight returns how many messages currently await their confirm (or a
// free in-flight slot), across all callers.
func (p *Publisher) InFlight() int { return len(p.slots) }

// Close stops accepting messages, waits for Publish calls in progress to
// get their confirms (each at most Config.ConfirmTimeout; calls waiting
// for a reconnect return ErrPublisherClosed), then closes the connection.
// It is idempotent; Publish after Close returns ErrPublisherClosed.
func (p *Publisher) Close() error {
	p.once.Do(func() {
		p.closedMu.Lock()
		p.closed = true
		p.closedMu.Unlock()
		close(p.closing)
		p.calls.Wait()
		<-p.runDone
		p.mu.Lock()
		s := p.sess
		p.mu.Unlock()
		if err := s.conn.Close(); err != nil && !errors.Is(err, amqp.ErrClosed) {
			p.closeErr = fmt.Errorf("durablews: close connection: %w", err)
		}
		s.watchers.Wait()
		p.logger.Info("Publisher closed", nil)
	})
	return p.closeErr
}
