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

	"github.com/durablews/durablews/internal/amqpconn"
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
// connection's confirm channels of an exchange, so throughput is bounded by
// the broker rather than by round trips.
//
// With Config.Mandatory, a message the broker returns (no queue bound for
// its routing key) fails with ErrUnroutable. Each publish carries a token
// (header PublishTokenHeader) that the return brings back, so a return is
// matched to exactly the publish it belongs to: copies of one message
// (same UUID) in flight together each get their own outcome, even when the
// broker confirms them out of order.
//
// If an exchange is deleted while the publisher runs, the next publish to
// it finds it gone (404), declares it again (or, when Passive, fails with
// an error saying it does not exist) and republishes what was lost.
//
// When the connection is lost, the publisher reconnects in the background
// with back-off, moving on to the next of Config.URLs (shuffled once per
// Publisher unless Config.KeepURLOrder is set) and running Config.OnConnect
// on the new connection. Messages whose confirm was lost with the
// connection are republished on the new connection (at-least-once: the
// browser client drops the duplicate by its amqp-message-id) until
// Config.ConfirmTimeout runs out; then Publish returns an error naming
// them. With Config.RetryNacks, nacked messages are sent again the same
// way. Nothing is dropped silently.
type Publisher struct {
	cfg    Config
	logger watermill.LoggerAdapter
	// trace: the logger is not a NopLogger, so a per-call Trace line is
	// worth its LogFields map (with NopLogger it would only allocate).
	trace bool

	mu    sync.Mutex
	sess  *session      // current session; may be lost while reconnecting
	ready chan struct{} // closed when the next session is installed

	slots     chan struct{} // in-flight semaphore, one token per unconfirmed message
	deadlines sync.Pool     // *callDeadline for ConfirmTimeout, reused across calls

	closedMu sync.RWMutex
	closed   bool
	calls    sync.WaitGroup // Publish calls in progress
	closing  chan struct{}
	ctx      context.Context // ends on Close; passed to Config.OnConnect
	cancel   context.CancelFunc
	runDone  chan struct{}
	once     sync.Once
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher connects to the first reachable broker of config.URLs
// (shuffled unless config.KeepURLOrder is set) that passes
// config.OnConnect, and returns a Publisher. It fails fast: if no broker
// answers it returns an error naming each URL and why, and starts nothing.
// A nil logger logs nothing.
func NewPublisher(config Config, logger watermill.LoggerAdapter) (*Publisher, error) {
	config = config.clone() // the caller may change its maps and slices afterwards
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, err
	}
	if !config.KeepURLOrder {
		// Publishers given the same list spread over the nodes.
		rand.Shuffle(len(config.URLs), func(i, j int) {
			config.URLs[i], config.URLs[j] = config.URLs[j], config.URLs[i]
		})
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
	p.ctx, p.cancel = context.WithCancel(context.Background())
	ctx, cancel := context.WithTimeout(p.ctx, config.ConfirmTimeout)
	defer cancel()
	var errs []string
	for i, u := range config.URLs {
		s, err := p.connect(ctx, u)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		p.sess = s
		logger.Info("Connected to broker", watermill.LogFields{"url": amqpconn.RedactURL(u)})
		go p.run(i)
		return p, nil
	}
	p.cancel()
	return nil, fmt.Errorf("durablews: cannot connect to any broker (is RabbitMQ running, reachable within Config.DialTimeout, and are the credentials right?): %s", strings.Join(errs, "; "))
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
		p.logger.Error("Connection to broker lost; reconnecting", errors.New(s.lostReason()), watermill.LogFields{"url": amqpconn.RedactURL(s.url)})
		_ = s.close()
		wait := p.reconnectWait(0)
		for attempt := 0; ; attempt++ {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-p.closing:
				t.Stop()
				return
			}
			urlIdx = (urlIdx + 1) % len(p.cfg.URLs)
			u := p.cfg.URLs[urlIdx]
			ns, err := p.connect(p.ctx, u)
			if err != nil {
				wait = p.reconnectWait(attempt + 1)
				p.logger.Error("Reconnect failed", err, watermill.LogFields{"attempt": attempt + 1, "retry_in": wait.String()})
				continue
			}
			p.mu.Lock()
			p.sess = ns
			close(p.ready)
			p.ready = make(chan struct{})
			p.mu.Unlock()
			p.logger.Info("Reconnected to broker", watermill.LogFields{"url": amqpconn.RedactURL(u), "attempts": attempt + 1})
			p.cfg.Observer.Reconnected(amqpconn.RedactURL(u))
			break
		}
	}
}

// reconnectWait is the wait before reconnect attempt n (0-based):
// Config.Reconnect's delay with jitter (half to all of it), so a fleet
// does not reconnect in lockstep.
func (p *Publisher) reconnectWait(n int) time.Duration {
	d := p.cfg.Reconnect.Delay(n)
	return d/2 + rand.N(d/2+1)
}

// connect dials u and runs Config.OnConnect on the new connection; a
// session that fails it is closed.
func (p *Publisher) connect(ctx context.Context, u string) (*session, error) {
	s, err := dialSession(&p.cfg, u, p.logger)
	if err != nil || p.cfg.OnConnect == nil {
		return s, err
	}
	if err := p.onConnect(ctx, s.conn); err != nil {
		_ = s.close()
		return nil, fmt.Errorf("Config.OnConnect on %s: %w", amqpconn.RedactURL(u), err)
	}
	return s, nil
}

func (p *Publisher) onConnect(ctx context.Context, conn *amqp.Connection) (err error) {
	defer func() {
		// A user hook must not take the publisher down.
		if r := recover(); r != nil {
			err = fmt.Errorf("panicked: %v", r)
		}
	}()
	return p.cfg.OnConnect(ctx, conn)
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

// InFlight returns how many messages hold one of the Config.MaxInFlight
// slots now, across all callers: sent, or being sent, and awaiting their
// confirm. Messages of callers waiting for a free slot are not counted.
func (p *Publisher) InFlight() int { return len(p.slots) }

// Close stops accepting messages, lets Publish calls in progress finish
// (each within its Config.ConfirmTimeout), then closes the connection,
// waiting at most 5 s for the broker to answer. While the broker blocks
// the connection (memory or disk alarm) nothing in progress can finish and
// the broker reads nothing, so those calls end at once (their unconfirmed
// messages fail with ErrPublisherClosed) and the connection is dropped
// without waiting; a call stuck writing to the blocked connection has its
// socket dropped. Calls waiting for a reconnect end at once too. A call
// stuck writing to a broker that stopped reading without blocking the
// connection (a frozen node) ends at its ConfirmTimeout, when its
// connection is dropped. So Close returns within ConfirmTimeout + 5 s, and
// at once when the broker blocks the connection.
//
// It is idempotent. Publish after Close fails every message with
// ErrPublisherClosed (and ErrNotSent), in a *PublishError.
func (p *Publisher) Close() error {
	p.once.Do(func() {
		p.closedMu.Lock()
		p.closed = true
		p.closedMu.Unlock()
		close(p.closing)
		p.cancel()
		p.waitForCalls()
		<-p.runDone
		p.mu.Lock()
		s := p.sess
		p.mu.Unlock()
		if err := s.close(); err != nil {
			// The connection is closed either way; the broker did not
			// answer (e.g. it blocks the connection during an alarm).
			p.logger.Info("Broker did not confirm closing the connection", watermill.LogFields{"error": err.Error()})
		}
		p.logger.Info("Publisher closed", nil)
	})
	return nil
}

// waitForCalls waits for the Publish calls in progress to end. Each ends
// within its ConfirmTimeout, and at once on Close while the broker blocks
// the connection, except one stuck writing to the blocked connection (the
// broker reads nothing): that socket is dropped so the write ends too.
func (p *Publisher) waitForCalls() {
	done := make(chan struct{})
	go func() {
		p.calls.Wait()
		close(done)
	}()
	for {
		p.mu.Lock()
		s, ready := p.sess, p.ready
		p.mu.Unlock()
		blocked, changed := s.blockState()
		if blocked && s.writers.Load() > 0 {
			s.drop("Close was called while the broker blocked the connection (a memory or disk alarm) and a write to it could not finish")
		}
		select {
		case <-done:
			return
		case <-changed:
		case <-ready: // a reconnect that was under way installed a new session
		}
	}
}
