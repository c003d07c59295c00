package receipts

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// subscription is one Subscribe call: its goroutine reads batches from a
// consumeChannel, hands out their receipt messages on out and settles
// each batch, and opens a new consumeChannel (declaring the topology
// again) when the channel or the connection is lost, until ctx ends or
// the Subscriber closes. It then closes out.
type subscription struct {
	s          *Subscriber
	ctx        context.Context
	bindingKey string
	tag        string // consumer tag, the same on every channel
	logger     watermill.LoggerAdapter
	out        chan *message.Message
}

// run consumes ch and its successors.
func (sub *subscription) run(ch *consumeChannel) {
	defer close(sub.out)
	var b backoff
	for {
		if sub.read(ch) {
			if !sub.s.isClosing() {
				// Only this subscription ends: the broker puts back
				// what it prefetched. (Subscriber.Close closes the
				// connection, which does the same for every channel.)
				ch.close()
			}
			return
		}
		// The channel or its connection is lost, or the broker cancelled
		// the consumer (the queue was deleted).
		ch.close()
		sub.logger.Info("Receipts channel lost; consuming again", nil)
		prev := ch.conn
		for ch = nil; ch == nil; {
			conn, err := sub.s.consumer.connection(sub.ctx.Done(), sub.s.closing)
			if err != nil {
				return
			}
			// A new connection comes after the consumer's back-off; on the
			// same one, back off here.
			if conn == prev && !b.sleep(sub.ctx.Done(), sub.s.closing) {
				return
			}
			if ch, err = openConsumeChannel(conn, sub.s.cfg, sub.bindingKey, sub.tag); err != nil {
				sub.logger.Error("Could not consume the receipts queue again; retrying", err, nil)
				prev = conn
			}
		}
		b.reset()
		sub.logger.Info("Consuming the receipts queue again", nil)
	}
}

// read handles the deliveries of ch until ch is lost (false) or the
// subscription ends (true).
func (sub *subscription) read(ch *consumeChannel) (ended bool) {
	for {
		switch {
		case sub.ending():
			return true
		case ch.isLost():
			return false
		}
		select {
		case d, ok := <-ch.deliveries:
			if !ok {
				return sub.ending()
			}
			if ch.isLost() {
				// Buffered before the loss: the broker delivers it again.
				continue
			}
			sub.handle(ch, &batch{d: d})
		case <-ch.lost:
		case <-sub.ctx.Done():
		case <-sub.s.closing:
		}
	}
}

func (sub *subscription) ending() bool {
	return sub.ctx.Err() != nil || sub.s.isClosing()
}

// handle splits b into receipt messages, sends them to out and settles b
// by their outcome.
func (sub *subscription) handle(ch *consumeChannel, b *batch) {
	s := sub.s
	s.batches.Add(1)
	if sub.ending() {
		b.nack(sub.logger) // the subscription is ending: the batch stays in the queue
		return
	}
	rs, err := DecodeBatch(b.d.RoutingKey, b.d.Body, s.cfg.Now())
	if err != nil {
		sub.refuse(b, err)
		return
	}
	s.receipts.Add(uint64(len(rs)))
	for _, r := range rs {
		m := r.toMessage()
		m.SetContext(sub.ctx)
		select {
		case sub.out <- m:
			b.msgs = append(b.msgs, m)
		case <-sub.ctx.Done():
			b.nack(sub.logger)
			return
		case <-s.closing:
			b.nack(sub.logger)
			return
		case <-ch.lost:
			sub.logger.Debug("Channel lost while handing out a receipt batch; the broker delivers it again", b.logFields())
			return
		}
	}
	for i, m := range b.msgs {
		select {
		case <-m.Acked():
		case <-m.Nacked():
			sub.logger.Debug("Receipt nacked; the batch is requeued", b.logFields().Add(watermill.LogFields{"receipt": m.UUID}))
			b.nack(sub.logger)
			return
		case <-sub.ctx.Done():
			b.settle(i, sub.logger)
			return
		case <-s.closing:
			b.settle(i, sub.logger)
			return
		case <-ch.lost:
			sub.logger.Debug("Channel lost while receipts of a batch were unacked; the broker delivers it again", b.logFields())
			return
		}
	}
	b.ack(sub.logger)
}

// refuse logs, counts and drops (acks) a batch that does not decode.
func (sub *subscription) refuse(b *batch, err error) {
	s := sub.s
	s.refused.Add(1)
	reason := "malformed"
	if errors.Is(err, ErrTabMismatch) {
		reason = "tab mismatch"
	}
	key := b.d.RoutingKey
	sub.logger.Error("Receipt batch refused and dropped", err, b.logFields().Add(watermill.LogFields{"reason": reason}))
	if s.cfg.OnRefused != nil {
		func() {
			defer func() {
				if p := recover(); p != nil {
					sub.logger.Error("Config.OnRefused panicked", fmt.Errorf("panic: %v", p), watermill.LogFields{"routing_key": key})
				}
			}()
			s.cfg.OnRefused(key, err)
		}()
	}
	b.ack(sub.logger)
}
