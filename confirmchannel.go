package durablews

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

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

	returns returnMatcher
}

// openConfirmChannel opens a channel in confirm mode on c and, with
// Config.Mandatory, matches the broker's returns to the publishes that
// await them.
func openConfirmChannel(c *connection) (*confirmChannel, error) {
	ch, err := c.amqpConn.Channel()
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
		closes:  ch.NotifyClose(make(chan *amqp.Error, 1)),
		returns: returnMatcher{awaiting: make(map[uint64]*awaitedReturn)},
	}
	if c.cfg.Mandatory {
		// amqp091-go hands each basic.return to both chans in turn before
		// it reads the next frame. Matching it between the two makes the
		// match happen before the ack that follows the return.
		rets := ch.NotifyReturn(make(chan amqp.Return))
		barrier := ch.NotifyReturn(make(chan amqp.Return))
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			_ = ch.Close()
			return nil, fmt.Errorf("%w: connection closed", ErrConnectionLost)
		}
		c.watchers.Add(1)
		c.mu.Unlock()
		go func() {
			defer c.watchers.Done()
			for r := range rets {
				cc.returns.returned(r)
				<-barrier
			}
		}()
	}
	return cc, nil
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

// publish sends pub and, when mandatory, registers it with the return
// matcher under the token it sets in pub.Headers[PublishTokenHeader]
// (pub's headers must be the caller's own).
func (cc *confirmChannel) publish(exchange, key string, mandatory bool, pub amqp.Publishing) (*amqp.DeferredConfirmation, *awaitedReturn, error) {
	cc.pubMu.Lock()
	defer cc.pubMu.Unlock()
	var a *awaitedReturn
	if mandatory {
		a = cc.returns.await(cc.ch.GetNextPublishSeqNo(), returnKey{pub.MessageId, exchange, key})
		if pub.Headers == nil {
			pub.Headers = amqp.Table{}
		}
		pub.Headers[PublishTokenHeader] = strconv.FormatUint(a.tag, 10)
	}
	dc, err := cc.ch.PublishWithDeferredConfirm(exchange, key, mandatory, false, pub)
	if err == nil && dc == nil {
		err = errors.New("channel is not in confirm mode")
	}
	if a != nil {
		if err != nil {
			cc.returns.forget(a)
			a = nil
		} else {
			cc.returns.sent(a, dc)
		}
	}
	return dc, a, err
}
