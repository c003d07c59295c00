package receipts

import (
	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v2/pkg/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// topologyBuilder declares the receipts exchange and the queue and binds
// the queue with the subscription's topic. watermill-amqp v2.1.3 gives a
// TopologyBuilder only the queue and exchange names it generated from the
// topic, so the Subscriber's Exchange.GenerateName returns the topic
// itself (the binding key), and this builder declares the real exchange
// from the Config. (The exchange name is used for nothing else when
// subscribing; the Subscriber never publishes.)
type topologyBuilder struct{ cfg Config }

var _ wamqp.TopologyBuilder = topologyBuilder{}

func (b topologyBuilder) BuildTopology(ch *amqp.Channel, _, bindingKey string, _ wamqp.Config, logger watermill.LoggerAdapter) error {
	if err := DeclareQueue(ch, b.cfg.queue(bindingKey)); err != nil {
		return err
	}
	logger.Debug("Receipts queue bound", watermill.LogFields{"queue": b.cfg.Queue, "exchange": b.cfg.Exchange, "binding_key": bindingKey})
	return nil
}

func (b topologyBuilder) ExchangeDeclare(ch *amqp.Channel, _ string, _ wamqp.Config) error {
	return DeclareExchange(ch, b.cfg.Exchange)
}
