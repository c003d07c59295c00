package receipts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
)

// Bounds of the consumer's connection.
const (
	// dialTimeout bounds the TCP connect and the TLS and AMQP handshakes
	// of one connection attempt unless the URL's connection_timeout sets
	// another bound (as in amqp091-go). Closing the Subscriber aborts an
	// attempt at once.
	dialTimeout = 30 * time.Second
	// closeTimeout bounds the wait for the broker's close-ok when the
	// Subscriber closes its connection.
	closeTimeout = 2 * time.Second
)

// errNotConnected: the connection is lost and not yet replaced.
var errNotConnected = errors.New("not connected to the broker (reconnecting)")

// consumer holds the Subscriber's one AMQP connection and keeps it open:
// once the connection is lost, it dials again with back-off (backoff)
// until a dial succeeds or the Subscriber closes. The subscriptions open
// their channels on it (connection) and open them again on the next
// connection; a channel, and the deliveries read on it, never outlive the
// connection they came on.
type consumer struct {
	url         string
	amqp        amqp.Config // with the connection name
	dialTimeout time.Duration
	logger      watermill.LoggerAdapter

	ctx    context.Context // cancelled by close: ends the loop, aborts a dial
	cancel context.CancelFunc
	done   chan struct{} // closed when the loop ended

	mu      sync.Mutex
	conn    *amqp.Connection // the current connection; nil while reconnecting and after close
	changed chan struct{}    // closed (and replaced) whenever conn changes
}

// dialConsumer connects to url and starts the reconnect loop. It fails
// when the first dial does.
func dialConsumer(url string, cfg amqp.Config, logger watermill.LoggerAdapter) (*consumer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{
		url: url, amqp: cfg, dialTimeout: dialTimeout, logger: logger,
		ctx: ctx, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{}),
	}
	if u, err := amqp.ParseURI(url); err == nil && u.ConnectionTimeout > 0 {
		c.dialTimeout = time.Duration(u.ConnectionTimeout) * time.Millisecond
	}
	conn, lost, err := c.dial()
	if err != nil {
		cancel()
		return nil, err
	}
	c.conn = conn
	go c.run(lost)
	return c, nil
}

// run waits for the loss of the current connection (lost) and replaces
// it, until close.
func (c *consumer) run(lost <-chan *amqp.Error) {
	defer close(c.done)
	var b backoff
	for {
		select {
		case err := <-lost:
			c.logger.Error("Receipts connection lost; reconnecting", connectionError(err), watermill.LogFields{"url": amqpconn.RedactURL(c.url)})
		case <-c.ctx.Done():
			return
		}
		c.set(nil)
		b.reset()
		for attempt := 1; ; attempt++ {
			if !b.sleep(c.ctx.Done(), nil) {
				return
			}
			conn, l, err := c.dial()
			if err != nil {
				if c.ctx.Err() != nil {
					return
				}
				c.logger.Error("Receipts reconnect failed", err, watermill.LogFields{"attempt": attempt})
				continue
			}
			c.set(conn)
			lost = l
			c.logger.Info("Receipts connection reopened", watermill.LogFields{"url": amqpconn.RedactURL(c.url), "attempts": attempt})
			break
		}
	}
}

func connectionError(err *amqp.Error) error {
	if err == nil {
		return errors.New("connection closed")
	}
	return err
}

func (c *consumer) set(conn *amqp.Connection) {
	c.mu.Lock()
	c.conn = conn
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// current returns the connection if it is open, else errNotConnected.
func (c *consumer) current() (*amqp.Connection, error) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil || conn.IsClosed() {
		return nil, errNotConnected
	}
	return conn, nil
}

// connection returns the open connection, waiting for the next one while
// the consumer reconnects. It fails when stop is closed (the
// subscription's context or the Subscriber's closing) or the consumer
// closed.
func (c *consumer) connection(stop1, stop2 <-chan struct{}) (*amqp.Connection, error) {
	for {
		c.mu.Lock()
		conn, changed := c.conn, c.changed
		c.mu.Unlock()
		if conn != nil && !conn.IsClosed() {
			return conn, nil
		}
		// A connection that is closed but still set: the loop has not
		// seen its loss yet and will change it.
		select {
		case <-changed:
		case <-stop1:
			return nil, context.Canceled
		case <-stop2:
			return nil, context.Canceled
		case <-c.ctx.Done():
			return nil, context.Canceled
		}
	}
}

// dial opens a connection and registers for its loss. Cancelling c.ctx
// aborts it at any step: the TCP connect, the TLS and AMQP handshakes.
func (c *consumer) dial() (*amqp.Connection, <-chan *amqp.Error, error) {
	cfg := c.amqp
	// amqp091-go zeroes the password of a PlainAuth or AMQPlainAuth
	// once the connection is open: each dial gets its own copies.
	cfg.SASL = cloneSASL(cfg.SASL)
	var (
		mu      sync.Mutex
		sock    net.Conn
		aborted bool
	)
	dial := cfg.Dial
	cfg.Dial = func(network, addr string) (net.Conn, error) {
		var conn net.Conn
		var err error
		if dial != nil {
			conn, err = dial(network, addr)
		} else {
			conn, err = (&net.Dialer{Timeout: c.dialTimeout}).DialContext(c.ctx, network, addr)
			if err == nil {
				// As amqp091-go's DefaultDial: the handshakes are bounded;
				// amqp091-go clears the deadline once the connection is open.
				err = conn.SetDeadline(time.Now().Add(c.dialTimeout))
			}
		}
		if err != nil {
			if conn != nil {
				_ = conn.Close()
			}
			return nil, err
		}
		mu.Lock()
		defer mu.Unlock()
		if aborted {
			_ = conn.Close()
			return nil, context.Canceled
		}
		sock = conn
		return conn, nil
	}
	stop := context.AfterFunc(c.ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		aborted = true
		if sock != nil {
			_ = sock.Close()
		}
	})
	conn, err := amqp.DialConfig(c.url, cfg)
	if !stop() && err == nil {
		// Closed while the handshake ended: its socket is closed.
		_ = conn.CloseDeadline(time.Now().Add(closeTimeout))
		err = context.Canceled
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", amqpconn.RedactURL(c.url), err)
	}
	return conn, conn.NotifyClose(make(chan *amqp.Error, 1)), nil
}

// close ends the reconnect loop (aborting a dial under way) and closes the
// connection, waiting closeTimeout at most for the broker's answer. The
// subscriptions must have ended (or given up their channels) before.
func (c *consumer) close() error {
	c.cancel()
	<-c.done
	c.mu.Lock()
	conn := c.conn
	c.conn = nil
	c.mu.Unlock()
	if conn == nil {
		return nil
	}
	if err := conn.CloseDeadline(time.Now().Add(closeTimeout)); err != nil && !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("close the connection: %w", err)
	}
	return nil
}

// cloneSASL copies the PlainAuth and AMQPlainAuth entries of auths;
// others (a custom mechanism) stay the caller's.
func cloneSASL(auths []amqp.Authentication) []amqp.Authentication {
	if auths == nil {
		return nil
	}
	out := make([]amqp.Authentication, len(auths))
	for i, a := range auths {
		switch a := a.(type) {
		case *amqp.PlainAuth:
			c := *a
			out[i] = &c
		case *amqp.AMQPlainAuth:
			c := *a
			out[i] = &c
		default:
			out[i] = a
		}
	}
	return out
}
