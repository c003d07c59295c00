package durablews

import (
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// openConfirmChannel opens a channel in confirm mode on the session's
// connection and, with Config.Mandatory, attributes the broker's returns
// to the publishes that await them.
func (s *session) openConfirmChannel() (*confirmChannel, error) {
	ch, err := s.conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = ch.Close()
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	cc := &confirmChannel{
		ch: ch,
		// amqp091-go puts the close reason in this buffer, then fails the
		// pending confirms: whoever sees a confirm lost with the channel
		// finds the reason here.
		closes:   ch.NotifyClose(make(chan *amqp.Error, 1)),
		awaiting: make(map[returnKey][]*awaitedReturn),
	}
	if s.cfg.Mandatory {
		// amqp091-go hands each basic.return to both chans in turn before
		// it reads the next frame. Attributing it between the two makes
		// the attribution happen before the ack that follows the return.
		rets := ch.NotifyReturn(make(chan amqp.Return))
		barrier := ch.NotifyReturn(make(chan amqp.Return))
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = ch.Close()
			return nil, fmt.Errorf("%w: connection closed", ErrConnectionLost)
		}
		s.watchers.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.watchers.Done()
			for r := range rets {
				cc.returned(r)
				<-barrier
			}
		}()
	}
	return cc, nil
}

// confirmChannel is one AMQP channel in confirm mode, with the returns of
// its mandatory publishes.
type confirmChannel struct {
	ch     *amqp.Channel
	closes chan *amqp.Error

	reasonOnce sync.Once
	reason     *amqp.Error // why the channel closed; nil: closed by us or with the connection

	// pubMu makes "register the awaited return, then publish" one step, so
	// awaiting is in publish order even with concurrent callers.
	pubMu sync.Mutex

	retMu     sync.Mutex
	awaiting  map[returnKey][]*awaitedReturn // mandatory publishes by what a return names, in publish order
	abandoned []*awaitedReturn               // given up before their confirm came
}

// returnKey is what a basic.return tells about the message it returns.
type returnKey struct{ messageID, exchange, routingKey string }

// awaitedReturn is a mandatory publish whose confirm has not been handled.
type awaitedReturn struct {
	key returnKey
	dc  *amqp.DeferredConfirmation
	ret *amqp.Return // set when the broker returned it
}

func (cc *confirmChannel) isClosed() bool { return cc.ch.IsClosed() }

// closeReason explains why the channel closed, e.g. a 404 for an exchange
// deleted while the publisher ran. Call it only once the channel is closed
// (isClosed, or a confirm lost with it): amqp091-go then delivers the
// reason, or closes the chan, right away.
func (cc *confirmChannel) closeReason() *amqp.Error {
	cc.reasonOnce.Do(func() {
		t := time.NewTimer(time.Second) // only if amqp091-go changed its order
		defer t.Stop()
		select {
		case cc.reason = <-cc.closes:
		case <-t.C:
		}
	})
	return cc.reason
}

// publish sends pub and, when mandatory, registers it to be matched with a
// return.
func (cc *confirmChannel) publish(exchange, key string, mandatory bool, pub amqp.Publishing) (*amqp.DeferredConfirmation, *awaitedReturn, error) {
	cc.pubMu.Lock()
	defer cc.pubMu.Unlock()
	var a *awaitedReturn
	if mandatory {
		a = &awaitedReturn{key: returnKey{pub.MessageId, exchange, key}}
		cc.retMu.Lock()
		cc.awaiting[a.key] = append(cc.awaiting[a.key], a)
		cc.retMu.Unlock()
	}
	dc, err := cc.ch.PublishWithDeferredConfirm(exchange, key, mandatory, false, pub)
	if err == nil && dc == nil {
		err = errors.New("channel is not in confirm mode")
	}
	if a != nil {
		cc.retMu.Lock()
		if err != nil {
			cc.removeLocked(a)
			a = nil
		} else {
			a.dc = dc
		}
		cc.retMu.Unlock()
	}
	return dc, a, err
}

// returned attributes a basic.return to the earliest publish it can
// belong to: same message id, exchange and routing key, not returned yet,
// and not confirmed yet (a return precedes its message's ack). A return
// nobody awaits is dropped.
func (cc *confirmChannel) returned(r amqp.Return) {
	cc.retMu.Lock()
	defer cc.retMu.Unlock()
	cc.pruneLocked()
	for _, a := range cc.awaiting[returnKey{r.MessageId, r.Exchange, r.RoutingKey}] {
		if a.ret == nil && (a.dc == nil || !isDone(a.dc.Done())) {
			a.ret = &r
			return
		}
	}
}

// settle ends the wait for a's return once its confirm came, and returns
// the return if the broker sent one.
func (cc *confirmChannel) settle(a *awaitedReturn) *amqp.Return {
	if a == nil {
		return nil
	}
	cc.retMu.Lock()
	defer cc.retMu.Unlock()
	cc.removeLocked(a)
	return a.ret
}

// abandon gives up on a before its confirm came. It stays registered until
// the confirm comes, so a late return is matched to it, and dropped, rather
// than to a later publish of the same message.
func (cc *confirmChannel) abandon(a *awaitedReturn) {
	if a == nil {
		return
	}
	cc.retMu.Lock()
	defer cc.retMu.Unlock()
	cc.abandoned = append(cc.abandoned, a)
	cc.pruneLocked()
}

// pruneLocked removes abandoned publishes whose confirm came: no return
// can follow an ack.
func (cc *confirmChannel) pruneLocked() {
	kept := cc.abandoned[:0]
	for _, a := range cc.abandoned {
		if isDone(a.dc.Done()) {
			cc.removeLocked(a)
		} else {
			kept = append(kept, a)
		}
	}
	clear(cc.abandoned[len(kept):])
	cc.abandoned = kept
}

func (cc *confirmChannel) removeLocked(a *awaitedReturn) {
	list := cc.awaiting[a.key]
	for i, b := range list {
		if b == a {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(cc.awaiting, a.key)
	} else {
		cc.awaiting[a.key] = list
	}
}
