package receipts

import (
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
)

// batch is one delivery of a receipt batch and the receipt messages
// handed out of it so far. The delivery is acked once all of them are
// acked and nacked with requeue (every receipt of it comes again)
// otherwise. It is settled on the channel it came on: if that channel is
// lost meanwhile, the ack or nack fails, and the broker has put the batch
// back already.
type batch struct {
	d    amqp.Delivery
	msgs []*message.Message
}

func (b *batch) logFields() watermill.LogFields {
	return watermill.LogFields{"routing_key": b.d.RoutingKey, "delivery_tag": b.d.DeliveryTag, "redelivered": b.d.Redelivered}
}

// ack removes the batch from the queue.
func (b *batch) ack(logger watermill.LoggerAdapter) {
	if err := b.d.Ack(false); err != nil {
		logger.Info("Could not ack a receipt batch (its channel is lost); the broker delivers it again", b.withErr(err))
	}
}

// nack puts the batch back in the queue.
func (b *batch) nack(logger watermill.LoggerAdapter) {
	if err := b.d.Nack(false, true); err != nil {
		logger.Info("Could not nack a receipt batch (its channel is lost); the broker delivers it again", b.withErr(err))
	}
}

func (b *batch) withErr(err error) watermill.LogFields {
	return b.logFields().Add(watermill.LogFields{"err": err.Error()})
}

// settle acks the batch if every message of b.msgs[from:] is acked
// already, else nacks it: the subscription is ending and will not wait.
func (b *batch) settle(from int, logger watermill.LoggerAdapter) {
	for _, m := range b.msgs[from:] {
		select {
		case <-m.Acked():
		default:
			b.nack(logger)
			return
		}
	}
	b.ack(logger)
}
