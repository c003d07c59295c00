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

// session is one AMQP connection and what is set up on it. A new session
// replaces it after the connection is lost; everything cached per
// connection (declared exchanges, channels) lives here so it is naturally
// reset on reconnect.
type session struct {
	url     string
	conn    *amqp.Connection
	netConn net.Conn // under conn, to drop it when the broker does not answer a close
	logger  watermill.LoggerAdapter
	cfg     *Config

	lost    chan struct{} // closed when the connection closes
	lostErr atomic.Pointer[amqp.Error]

	writers    atomic.Int32 // Publish calls writing to the connection (callDeadline.beginWrite)
	dropOnce   sync.Once
	dropReason atomic.Pointer[string] // why drop dropped the socket

	mu        sync.Mutex
	closed    bool                      // close started: start no more goroutines
	exchanges map[string]*exchangeState // by exchange name

	blockedMu sync.Mutex
	blocked   bool
	changed   chan struct{} // closed and replaced when blocked changes

	watchers sync.WaitGroup
}

// exchangeState is what the session set up for one exchange. Each exchange
// has its own confirm channels: a publish to an exchange deleted under us
// closes its channel (404), and that must not cost other exchanges' callers
// their confirms.
type exchangeState struct {
	decl  *rpc // declaration in progress or done; nil: not declared
	slots []*channelSlot
	next  atomic.Uint32
}

// rpc is a broker round trip run in its own goroutine, so a caller can stop
// waiting for it (deadline, Close) while amqp091-go, which cannot cancel
// a round trip, waits on.
type rpc struct {
	done chan struct{}
	err  error // valid once done is closed
}

func (r *rpc) finish(err error) {
	r.err = err
	close(r.done)
}

func failedRPC(err error) *rpc {
	r := &rpc{done: make(chan struct{})}
	r.finish(err)
	return r
}

// channelSlot holds the current confirm channel of one of an exchange's
// slots, reopened on demand after a channel-level error.
type channelSlot struct {
	mu      sync.Mutex
	cur     *confirmChannel
	opening *rpc // open in progress; its result goes to cur
}

func dialSession(cfg *Config, url string, logger watermill.LoggerAdapter) (*session, error) {
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
	conn, err := amqp.DialConfig(url, ac)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", amqpconn.RedactURL(url), err)
	}
	s := &session{
		url: url, conn: conn, netConn: netConn, logger: logger, cfg: cfg,
		lost:      make(chan struct{}),
		exchanges: make(map[string]*exchangeState),
		changed:   make(chan struct{}),
	}
	closes := conn.NotifyClose(make(chan *amqp.Error, 1))
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	s.watchers.Add(2)
	go func() {
		defer s.watchers.Done()
		if e, ok := <-closes; ok && e != nil {
			s.lostErr.Store(e)
		}
		close(s.lost)
	}()
	go func() {
		defer s.watchers.Done()
		for b := range blocks {
			s.setBlocked(b)
		}
		s.setBlocked(amqp.Blocking{Active: false})
	}()
	return s, nil
}

// close closes the connection, at most closeTimeout waiting for the broker,
// and waits for the session's goroutines (they end with the connection).
func (s *session) close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	// Not amqp091-go's CloseDeadline: every frame the broker sends (its
	// heartbeats too) moves the read deadline again.
	wait := closeTimeout
	if blocked, _ := s.blockState(); blocked {
		wait = 0 // a blocked connection is not read: connection.close would go unanswered
	}
	done := make(chan error, 1)
	go func() { done <- s.conn.Close() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(wait):
		_ = s.netConn.Close() // the broker does not answer: drop the TCP connection
		err = <-done
		if err == nil || errors.Is(err, amqp.ErrClosed) {
			err = fmt.Errorf("no answer to connection.close within %v; dropped the TCP connection", wait)
		}
	}
	s.watchers.Wait()
	if err != nil && !errors.Is(err, amqp.ErrClosed) {
		return err
	}
	return nil
}

// goAsync runs fn as an rpc tied to the session: close waits for it, and
// none starts once close began.
func (s *session) goAsync(fn func() error) *rpc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.goLocked(fn)
}

func (s *session) goLocked(fn func() error) *rpc {
	if s.closed {
		return failedRPC(fmt.Errorf("%w: connection closed", ErrConnectionLost))
	}
	r := &rpc{done: make(chan struct{})}
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		r.finish(fn())
	}()
	return r
}

func (s *session) isLost() bool {
	select {
	case <-s.lost:
		return true
	default:
		return false
	}
}

// dead reports whether the connection is gone or going: amqp091-go marks
// the connection closed before it closes its channels, while s.lost waits
// for our watcher goroutine, so a confirm lost with a channel may be seen
// before s.lost is closed.
func (s *session) dead() bool { return s.isLost() || s.conn.IsClosed() }

// lostConnection reports whether err means the connection is gone, so the
// caller should retry on the next one. A hard error the broker sent about
// what we asked for (other than a forced close) is not a lost connection:
// reconnecting would only repeat it.
func (s *session) lostConnection(err error) bool {
	if !s.dead() {
		return false
	}
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Server && ae.Code != amqp.ConnectionForced {
		return false
	}
	return true
}

// drop closes the TCP connection under the AMQP one, ending any write
// stuck on it, and remembers why: amqp091-go then reports a frame error,
// and lostReason says what happened instead.
func (s *session) drop(reason string) {
	s.dropOnce.Do(func() {
		s.dropReason.Store(&reason)
		s.logger.Error("Dropping the connection to the broker", errors.New(reason), watermill.LogFields{"url": amqpconn.RedactURL(s.url)})
		_ = s.netConn.Close()
	})
}

func (s *session) lostReason() string {
	if r := s.dropReason.Load(); r != nil {
		return *r
	}
	if e := s.lostErr.Load(); e != nil {
		return e.Error()
	}
	return "connection closed"
}

func (s *session) setBlocked(b amqp.Blocking) {
	s.blockedMu.Lock()
	defer s.blockedMu.Unlock()
	if b.Active == s.blocked {
		return
	}
	s.blocked = b.Active
	close(s.changed)
	s.changed = make(chan struct{})
	if b.Active {
		s.logger.Info("Broker blocked the connection (resource alarm); publishing waits", watermill.LogFields{"reason": b.Reason})
	} else {
		s.logger.Info("Broker unblocked the connection", nil)
	}
}

// blockState reports whether the broker blocks the connection, and a
// channel that closes when that changes.
func (s *session) blockState() (blocked bool, changed <-chan struct{}) {
	s.blockedMu.Lock()
	defer s.blockedMu.Unlock()
	return s.blocked, s.changed
}

func (s *session) exchange(name string) *exchangeState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchangeLocked(name)
}

func (s *session) exchangeLocked(name string) *exchangeState {
	x := s.exchanges[name]
	if x == nil {
		x = &exchangeState{slots: make([]*channelSlot, s.cfg.Channels)}
		for i := range x.slots {
			x.slots[i] = &channelSlot{}
		}
		s.exchanges[name] = x
	}
	return x
}

// declaration returns the declaration of e on this connection: done if it
// succeeded before, else in progress (started now if needed). A failed
// declaration is forgotten, so the next caller tries again.
func (s *session) declaration(topic string, e Exchange) *rpc {
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.exchangeLocked(e.Name)
	if x.decl != nil {
		return x.decl
	}
	var r *rpc
	r = s.goLocked(func() error {
		err := s.declare(topic, e)
		if err != nil {
			s.mu.Lock() // also orders this read of r after its assignment
			if x.decl == r {
				x.decl = nil
			}
			s.mu.Unlock()
		}
		return err
	})
	if !s.closed {
		x.decl = r
	}
	return r
}

// forget drops decl, the declaration of exchange name, e.g. after a
// publish found the exchange gone (404), so the next publish declares or
// checks it again. A newer declaration (another caller saw the 404 first)
// is kept.
func (s *session) forget(name string, decl *rpc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if x := s.exchangeLocked(name); x.decl == decl {
		x.decl = nil
	}
}

// declare makes sure exchange e exists: declared (durable) or, when
// Passive, checked. It uses a channel of its own: a failed declare closes
// its channel.
func (s *session) declare(topic string, e Exchange) error {
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("open a channel to declare exchange %q: %w", e.Name, err)
	}
	if e.Passive {
		err = ch.ExchangeDeclarePassive(e.Name, e.Kind, true, false, false, false, nil)
	} else {
		err = ch.ExchangeDeclare(e.Name, e.Kind, true, false, false, false, nil)
	}
	if err == nil {
		_ = ch.Close()
		s.logger.Debug("Declared exchange", watermill.LogFields{"topic": topic, "exchange": e.Name, "passive": e.Passive})
		return nil
	}
	var ae *amqp.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case amqp.NotFound:
			return fmt.Errorf("exchange %q for topic %q does not exist and Passive is set: create it or set Passive: false: %w", e.Name, topic, err)
		case amqp.PreconditionFailed:
			return fmt.Errorf("exchange %q for topic %q exists with other settings than durable %s: delete it or change Exchange.Kind: %w", e.Name, topic, e.Kind, err)
		case amqp.AccessRefused:
			return fmt.Errorf("not allowed to declare exchange %q for topic %q: grant configure permission or set Passive: true: %w", e.Name, topic, err)
		}
	}
	return fmt.Errorf("declare exchange %q for topic %q: %w", e.Name, topic, err)
}

// channel returns the next of the exchange's confirm channels, or, while
// it is being opened, the rpc to wait for before asking again.
func (s *session) channel(exchange string) (*confirmChannel, *rpc) {
	x := s.exchange(exchange)
	slot := x.slots[slotIndex(x.next.Add(1), len(x.slots))]
	slot.mu.Lock()
	defer slot.mu.Unlock()
	if slot.cur != nil && !slot.cur.isClosed() {
		return slot.cur, nil
	}
	if slot.opening == nil {
		slot.opening = s.goAsync(func() error {
			cc, err := s.openConfirmChannel()
			slot.mu.Lock()
			slot.cur, slot.opening = cc, nil
			slot.mu.Unlock()
			return err
		})
	}
	return nil, slot.opening
}

// slotIndex is the slot of n that counter value c picks, round robin.
func slotIndex(c uint32, n int) int { return int(c % uint32(n)) } // unsigned: int(c) is negative past 2^31 on 32-bit platforms

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
