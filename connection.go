package durablews

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
)

// closeTimeout bounds closing a connection: a broker that blocks the
// connection (resource alarm) reads nothing, not even connection.close.
const closeTimeout = 5 * time.Second

// connection is one AMQP connection of the Publisher and what is set up on
// it. A new connection replaces it after it is lost (reconnect.go);
// everything cached per connection (declared exchanges, confirm channels:
// exchangechannels.go) lives here, so it is naturally reset on reconnect.
type connection struct {
	url      string
	amqpConn *amqp.Connection
	netConn  net.Conn // under amqpConn, to drop it when the broker does not answer
	logger   watermill.LoggerAdapter
	cfg      *Config

	lost    chan struct{} // closed when the connection closes
	lostErr atomic.Pointer[amqp.Error]

	writers    atomic.Int32 // Publish calls writing to the connection (callDeadline.beginWrite)
	dropOnce   sync.Once
	dropReason atomic.Pointer[string] // why drop dropped the socket

	mu        sync.Mutex
	closed    bool                         // close started: start no more goroutines
	exchanges map[string]*exchangeChannels // by exchange name

	blockedMu sync.Mutex
	blocked   bool
	changed   chan struct{} // closed and replaced when blocked changes

	watchers sync.WaitGroup
}

func dialConnection(cfg *Config, url string, logger watermill.LoggerAdapter) (*connection, error) {
	ac := amqpconn.WithConnectionName(cfg.AMQP, "durablews-publisher")
	dial := ac.Dial
	if dial == nil {
		// amqp091-go's default gives each attempt 30 s, too long to walk a list of URLs.
		dial = amqp.DefaultDial(cfg.DialTimeout)
	}
	var netConn net.Conn
	ac.Dial = func(network, addr string) (net.Conn, error) {
		c, err := dial(network, addr)
		netConn = c
		return c, err
	}
	amqpConn, err := amqp.DialConfig(url, ac)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", amqpconn.RedactURL(url), err)
	}
	c := &connection{
		url: url, amqpConn: amqpConn, netConn: netConn, logger: logger, cfg: cfg,
		lost:      make(chan struct{}),
		exchanges: make(map[string]*exchangeChannels),
		changed:   make(chan struct{}),
	}
	closes := amqpConn.NotifyClose(make(chan *amqp.Error, 1))
	blocks := amqpConn.NotifyBlocked(make(chan amqp.Blocking, 4))
	c.watchers.Add(2)
	go func() {
		defer c.watchers.Done()
		if e, ok := <-closes; ok && e != nil {
			c.lostErr.Store(e)
		}
		close(c.lost)
	}()
	go func() {
		defer c.watchers.Done()
		for b := range blocks {
			c.setBlocked(b)
		}
		c.setBlocked(amqp.Blocking{Active: false})
	}()
	return c, nil
}

// close closes the connection, at most closeTimeout waiting for the broker,
// and waits for the connection's goroutines (they end with it).
func (c *connection) close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	// Not amqp091-go's CloseDeadline: every frame the broker sends (its
	// heartbeats too) moves the read deadline again.
	wait := closeTimeout
	if blocked, _ := c.blockState(); blocked {
		wait = 0 // a blocked connection is not read: connection.close would go unanswered
	}
	done := make(chan error, 1)
	go func() { done <- c.amqpConn.Close() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(wait):
		_ = c.netConn.Close() // the broker does not answer: drop the TCP connection
		err = <-done
		if err == nil || errors.Is(err, amqp.ErrClosed) {
			err = fmt.Errorf("no answer to connection.close within %v; dropped the TCP connection", wait)
		}
	}
	c.watchers.Wait()
	if err != nil && !errors.Is(err, amqp.ErrClosed) {
		return err
	}
	return nil
}

// drop closes the TCP connection under the AMQP one, ending any write
// stuck on it, and remembers why: amqp091-go then reports a frame error,
// and lostReason says what happened instead.
func (c *connection) drop(reason string) {
	c.dropOnce.Do(func() {
		c.dropReason.Store(&reason)
		c.logger.Error("Dropping the connection to the broker", errors.New(reason), watermill.LogFields{"url": amqpconn.RedactURL(c.url)})
		_ = c.netConn.Close()
	})
}

// startRoundTrip runs fn as a round trip tied to the connection: close
// waits for it, and none starts once close began.
func (c *connection) startRoundTrip(fn func() error) *roundTrip {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.startRoundTripLocked(fn)
}

func (c *connection) startRoundTripLocked(fn func() error) *roundTrip {
	if c.closed {
		return failedRoundTrip(fmt.Errorf("%w: connection closed", ErrConnectionLost))
	}
	r := &roundTrip{done: make(chan struct{})}
	c.watchers.Add(1)
	go func() {
		defer c.watchers.Done()
		r.finish(fn())
	}()
	return r
}

func (c *connection) isLost() bool { return isDone(c.lost) }

// dead reports whether the connection is gone or going: amqp091-go marks
// the connection closed before it closes its channels, while c.lost waits
// for our watcher goroutine, so a confirm lost with a channel may be seen
// before c.lost is closed.
func (c *connection) dead() bool { return c.isLost() || c.amqpConn.IsClosed() }

// lostConnection reports whether err means the connection is gone, so the
// caller should retry on the next one. A hard error the broker sent about
// what we asked for (other than a forced close) is not a lost connection:
// reconnecting would only repeat it.
func (c *connection) lostConnection(err error) bool {
	if !c.dead() {
		return false
	}
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Server && ae.Code != amqp.ConnectionForced {
		return false
	}
	return true
}

func (c *connection) lostReason() string {
	if r := c.dropReason.Load(); r != nil {
		return *r
	}
	if e := c.lostErr.Load(); e != nil {
		return e.Error()
	}
	return "connection closed"
}

func (c *connection) setBlocked(b amqp.Blocking) {
	c.blockedMu.Lock()
	defer c.blockedMu.Unlock()
	if b.Active == c.blocked {
		return
	}
	c.blocked = b.Active
	close(c.changed)
	c.changed = make(chan struct{})
	if b.Active {
		c.logger.Info("Broker blocked the connection (resource alarm); publishing waits", watermill.LogFields{"reason": b.Reason})
	} else {
		c.logger.Info("Broker unblocked the connection", nil)
	}
}

// blockState reports whether the broker blocks the connection, and a
// channel that closes when that changes.
func (c *connection) blockState() (blocked bool, changed <-chan struct{}) {
	c.blockedMu.Lock()
	defer c.blockedMu.Unlock()
	return c.blocked, c.changed
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
