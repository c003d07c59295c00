package durablews

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/durablews/durablews/internal/amqpconn"
)

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
	conn  *connection   // current connection; may be lost while reconnecting
	ready chan struct{} // closed when the next connection is installed

	slots     chan struct{} // in-flight semaphore, one token per unconfirmed message
	deadlines sync.Pool     // *callDeadline for ConfirmTimeout, reused across calls

	closedMu sync.RWMutex
	closed   bool
	calls    sync.WaitGroup // Publish calls in progress
	closing  chan struct{}
	ctx      context.Context // ends on Close; passed to Config.OnConnect
	cancel   context.CancelFunc
	runDone  chan struct{} // closed when keepConnected returns
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
		c, err := p.connect(ctx, u)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		p.conn = c
		logger.Info("Connected to broker", watermill.LogFields{"url": amqpconn.RedactURL(u)})
		go p.keepConnected(i)
		return p, nil
	}
	p.cancel()
	return nil, fmt.Errorf("durablews: cannot connect to any broker (is RabbitMQ running, reachable within Config.DialTimeout, and are the credentials right?): %s", strings.Join(errs, "; "))
}

// current returns the current connection, and a channel closed when a
// reconnect installs the next one.
func (p *Publisher) current() (*connection, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn, p.ready
}

// liveConnection returns a live connection other than avoid, waiting for a
// reconnect if needed, until deadline or Close.
func (p *Publisher) liveConnection(deadline <-chan time.Time, avoid *connection) (*connection, error) {
	for {
		c, ready := p.current()
		if c != avoid && !c.dead() {
			return c, nil
		}
		select {
		case <-ready:
		case <-deadline:
			return nil, fmt.Errorf("%w: still reconnecting when Config.ConfirmTimeout ran out (%s)", ErrConnectionLost, c.lostReason())
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
		c, _ := p.current()
		if err := c.close(); err != nil {
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
		c, ready := p.current()
		blocked, changed := c.blockState()
		if blocked && c.writers.Load() > 0 {
			c.drop("Close was called while the broker blocked the connection (a memory or disk alarm) and a write to it could not finish")
		}
		select {
		case <-done:
			return
		case <-changed:
		case <-ready: // a reconnect that was under way installed a new connection
		}
	}
}
