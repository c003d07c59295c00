package durablews

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
)

// session is one AMQP connection and the confirm-mode channels on it. A
// new session replaces it after the connection is lost; everything cached
// per connection (declared exchanges, channels) lives here so it is
// naturally reset on reconnect.
type session struct {
	gen    uint64
	url    string
	conn   *amqp.Connection
	logger watermill.LoggerAdapter
	cfg    *Config

	lost     chan struct{} // closed when the connection closes
	lostErr  atomic.Pointer[amqp.Error]
	channels []*channelSlot
	next     atomic.Uint32

	topoMu   sync.Mutex
	topo     *amqp.Channel
	declared map[string]bool // topic -> exchange declared/checked on this connection

	blockedMu sync.Mutex
	unblocked chan struct{} // nil while not blocked; closed on unblock
	watchers  sync.WaitGroup
}

// channelSlot holds the current confirm channel of one of the session's
// slots, reopened on demand after a channel-level error.
type channelSlot struct {
	mu  sync.Mutex
	cur *confirmChannel
}

// confirmChannel is one AMQP channel in confirm mode with its returns.
type confirmChannel struct {
	ch      *amqp.Channel
	returns chan amqp.Return

	mu       sync.Mutex
	returned map[string][]amqp.Return // by MessageId, not yet claimed
	closeErr atomic.Pointer[amqp.Error]
	closed   chan struct{}
}

func dialSession(cfg *Config, url string, gen uint64, logger watermill.LoggerAdapter) (*session, error) {
	conn, err := amqpconn.Dial(url, cfg.AMQP, "durablews-publisher")
	if err != nil {
		return nil, err
	}
	s := &session{
		gen: gen, url: url, conn: conn, logger: logger, cfg: cfg,
		lost:     make(chan struct{}),
		declared: make(map[string]bool),
	}
	s.watchClose(conn.NotifyClose(make(chan *amqp.Error, 1)), &s.lostErr, s.lost)
	blocks := conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		for b := range blocks {
			s.setBlocked(b)
		}
		s.setBlocked(amqp.Blocking{Active: false})
	}()

	s.channels = make([]*channelSlot, cfg.Channels)
	for i := range s.channels {
		s.channels[i] = &channelSlot{}
		if _, err := s.channels[i].get(s); err != nil {
			s.close()
			return nil, fmt.Errorf("open confirm channel on %s: %w", amqpconn.RedactURL(url), err)
		}
	}
	return s, nil
}

// close closes the connection and waits for the session's goroutines.
func (s *session) close() {
	_ = s.conn.Close()
	s.watchers.Wait()
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

func (s *session) lostReason() string {
	if e := s.lostErr.Load(); e != nil {
		return e.Error()
	}
	return "connection closed"
}

func (s *session) setBlocked(b amqp.Blocking) {
	s.blockedMu.Lock()
	defer s.blockedMu.Unlock()
	switch {
	case b.Active && s.unblocked == nil:
		s.unblocked = make(chan struct{})
		s.logger.Info("Broker blocked the connection (resource alarm); publishing waits", watermill.LogFields{"reason": b.Reason})
	case !b.Active && s.unblocked != nil:
		close(s.unblocked)
		s.unblocked = nil
		s.logger.Info("Broker unblocked the connection", nil)
	}
}

// whenUnblocked returns nil when the connection may publish, otherwise a
// channel that closes when it may.
func (s *session) whenUnblocked() <-chan struct{} {
	s.blockedMu.Lock()
	defer s.blockedMu.Unlock()
	return s.unblocked
}

// pick returns a confirm channel, round robin over the slots.
func (s *session) pick() (*confirmChannel, error) {
	n := s.next.Add(1)
	return s.channels[int(n)%len(s.channels)].get(s)
}

func (slot *channelSlot) get(s *session) (*confirmChannel, error) {
	slot.mu.Lock()
	defer slot.mu.Unlock()
	if slot.cur != nil && !slot.cur.isClosed() {
		return slot.cur, nil
	}
	if s.isLost() {
		return nil, fmt.Errorf("%w: %s", ErrConnectionLost, s.lostReason())
	}
	cc, err := s.openConfirmChannel()
	if err != nil {
		return nil, err
	}
	slot.cur = cc
	return cc, nil
}

func (s *session) openConfirmChannel() (*confirmChannel, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	cc := &confirmChannel{
		ch: ch,
		// Every return precedes its message's ack and at most maxInFlight
		// messages await an ack, so this buffer never fills (amqp091-go
		// drops notifications on a chan that stays full for 5 s).
		returns:  ch.NotifyReturn(make(chan amqp.Return, s.cfg.MaxInFlight+1)),
		returned: make(map[string][]amqp.Return),
		closed:   make(chan struct{}),
	}
	s.watchClose(ch.NotifyClose(make(chan *amqp.Error, 1)), &cc.closeErr, cc.closed)
	return cc, nil
}

// watchClose waits on a NotifyClose channel (of the connection or of a
// channel), keeps the broker's reason in reason and then closes closed.
// close waits for it.
func (s *session) watchClose(closes <-chan *amqp.Error, reason *atomic.Pointer[amqp.Error], closed chan struct{}) {
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		if e, ok := <-closes; ok && e != nil {
			reason.Store(e)
		}
		close(closed)
	}()
}

func (cc *confirmChannel) isClosed() bool { return cc.ch.IsClosed() }

// claimReturn reports whether the broker returned a message with this id.
// amqp091-go hands the basic.return to our buffered chan before it
// processes the ack that follows it, so draining the chan after the ack
// is observed is enough to see every return that belongs to the message.
func (cc *confirmChannel) claimReturn(messageID string) (amqp.Return, bool) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	for drained := false; !drained; {
		select {
		case r, ok := <-cc.returns:
			if !ok {
				drained = true
				break
			}
			cc.returned[r.MessageId] = append(cc.returned[r.MessageId], r)
		default:
			drained = true
		}
	}
	rs := cc.returned[messageID]
	if len(rs) == 0 {
		return amqp.Return{}, false
	}
	if len(rs) == 1 {
		delete(cc.returned, messageID)
	} else {
		cc.returned[messageID] = rs[1:]
	}
	return rs[0], true
}

// closeReason explains why the channel closed, e.g. a 404 for an exchange
// deleted while the publisher ran.
func (cc *confirmChannel) closeReason() *amqp.Error { return cc.closeErr.Load() }

// declare makes sure the exchange for topic exists on this connection:
// declared (durable) or, when Passive, checked. Done once per connection.
func (s *session) declare(ctx context.Context, topic string, e Exchange) error {
	s.topoMu.Lock()
	defer s.topoMu.Unlock()
	if s.declared[topic] {
		return nil
	}
	if s.topo == nil || s.topo.IsClosed() {
		if s.isLost() {
			return fmt.Errorf("%w: %s", ErrConnectionLost, s.lostReason())
		}
		ch, err := s.conn.Channel()
		if err != nil {
			return fmt.Errorf("%w: open topology channel: %v", ErrConnectionLost, err)
		}
		s.topo = ch
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var err error
	if e.Passive {
		err = s.topo.ExchangeDeclarePassive(e.Name, e.Kind, true, false, false, false, nil)
	} else {
		err = s.topo.ExchangeDeclare(e.Name, e.Kind, true, false, false, false, nil)
	}
	if err != nil {
		var ae *amqp.Error
		switch {
		case errors.As(err, &ae) && ae.Code == amqp.NotFound:
			return fmt.Errorf("exchange %q for topic %q does not exist and Passive is set: create it (durablews setup) or set Passive: false: %w", e.Name, topic, err)
		case errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed:
			return fmt.Errorf("exchange %q for topic %q exists with other settings than durable %s: delete it or change Exchange.Kind: %w", e.Name, topic, e.Kind, err)
		case errors.As(err, &ae) && ae.Code == amqp.AccessRefused:
			return fmt.Errorf("not allowed to declare exchange %q for topic %q: grant configure permission or set Passive: true: %w", e.Name, topic, err)
		}
		return fmt.Errorf("%w: declare exchange %q: %v", ErrConnectionLost, e.Name, err)
	}
	s.declared[topic] = true
	return nil
}

// forget drops the declared mark, e.g. after a publish found the exchange
// gone (404), so the next publish declares or checks it again.
func (s *session) forget(topic string) {
	s.topoMu.Lock()
	defer s.topoMu.Unlock()
	delete(s.declared, topic)
}
