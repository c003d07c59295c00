package durablews

import (
	"errors"
	"fmt"
	"strconv"
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
		awaiting: make(map[uint64]*awaitedReturn),
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

// PublishTokenHeader is the AMQP header in which, with Config.Mandatory, the
// Publisher sends a token naming the publish (the publish sequence number
// on its channel, as a decimal string). A basic.return carries the
// message's headers back, so the return is matched to exactly the publish
// it belongs to, even when copies of one message (same id, exchange and
// routing key) are in flight together. Consumers see it: a STOMP client
// as a header "x-durablews-publish:17", a watermill-amqp subscriber as
// metadata. It says nothing about the message; DefaultMarshaler leaves it
// out of the metadata it reads and never writes metadata of that name.
const PublishTokenHeader = "x-durablews-publish"

// confirmChannel is one AMQP channel in confirm mode, with the returns of
// its mandatory publishes.
type confirmChannel struct {
	ch     *amqp.Channel
	closes chan *amqp.Error

	reasonOnce sync.Once
	reason     *amqp.Error // why the channel closed; nil: closed by us or with the connection

	// pubMu makes "take the next publish sequence number as the token,
	// register the awaited return, publish" one step.
	pubMu sync.Mutex

	retMu    sync.Mutex
	awaiting map[uint64]*awaitedReturn // mandatory publishes by publish sequence number (the token)
}

// returnKey is what a basic.return tells about the message it returns.
type returnKey struct{ messageID, exchange, routingKey string }

// awaitedReturn is a mandatory publish whose confirm has not been handled.
type awaitedReturn struct {
	tag uint64 // publish sequence number on the channel, sent as PublishTokenHeader
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
// return by the token it sets in pub.Headers[PublishTokenHeader] (pub's
// headers must be the caller's own).
func (cc *confirmChannel) publish(exchange, key string, mandatory bool, pub amqp.Publishing) (*amqp.DeferredConfirmation, *awaitedReturn, error) {
	cc.pubMu.Lock()
	defer cc.pubMu.Unlock()
	var a *awaitedReturn
	if mandatory {
		a = &awaitedReturn{tag: cc.ch.GetNextPublishSeqNo(), key: returnKey{pub.MessageId, exchange, key}}
		if pub.Headers == nil {
			pub.Headers = amqp.Table{}
		}
		pub.Headers[PublishTokenHeader] = strconv.FormatUint(a.tag, 10)
		cc.retMu.Lock()
		cc.awaiting[a.tag] = a
		cc.retMu.Unlock()
	}
	dc, err := cc.ch.PublishWithDeferredConfirm(exchange, key, mandatory, false, pub)
	if err == nil && dc == nil {
		err = errors.New("channel is not in confirm mode")
	}
	if a != nil {
		cc.retMu.Lock()
		switch {
		case err != nil:
			delete(cc.awaiting, a.tag)
			a = nil
		default:
			a.dc = dc
		}
		cc.retMu.Unlock()
	}
	return dc, a, err
}

// returned attributes a basic.return to the publish its token names. A
// return without a token (a broker that dropped the headers) goes to the
// earliest publish it can belong to: same message id, exchange and
// routing key, not returned yet, and not confirmed yet (a return precedes
// its message's ack). A return nobody awaits, e.g. of a publish given up
// (abandon), is dropped.
func (cc *confirmChannel) returned(r amqp.Return) {
	cc.retMu.Lock()
	defer cc.retMu.Unlock()
	key := returnKey{r.MessageId, r.Exchange, r.RoutingKey}
	if tok, ok := r.Headers[PublishTokenHeader].(string); ok {
		if tag, err := strconv.ParseUint(tok, 10, 64); err == nil {
			if a := cc.awaiting[tag]; a != nil && a.key == key && a.ret == nil {
				a.ret = &r
			}
			return
		}
	}
	var first *awaitedReturn
	for _, a := range cc.awaiting {
		if a.key == key && a.ret == nil && (a.dc == nil || !isDone(a.dc.Done())) && (first == nil || a.tag < first.tag) {
			first = a
		}
	}
	if first != nil {
		first.ret = &r
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
	delete(cc.awaiting, a.tag)
	return a.ret
}

// abandon gives up on a before its confirm came: a return of it that
// comes later names it by its token and is dropped.
func (cc *confirmChannel) abandon(a *awaitedReturn) {
	if a == nil {
		return
	}
	cc.retMu.Lock()
	defer cc.retMu.Unlock()
	delete(cc.awaiting, a.tag)
}
