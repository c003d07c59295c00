package durablews

import (
	"fmt"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v2/pkg/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// WatermillAMQPConfig returns a watermill-amqp configuration that shares
// this Config's first broker URL, exchanges (name and kind per topic,
// durable, Passive honoured), marshaler (so a watermill-amqp subscriber
// reads exactly what the Publisher wrote), persistent delivery and
// publisher confirms. Use it for backend services that consume the same
// events with watermill-amqp's Subscriber:
//
//	sub, err := amqp.NewSubscriber(cfg.WatermillAMQPConfig(
//		amqp.GenerateQueueNameTopicNameWithSuffix("billing"),
//		func(topic string) string { return "customer.*.order_created" },
//	), logger)
//
// Each topic's subscriber gets a durable queue from queueName, bound with
// bindingKey(topic) ("" for fanout exchanges). Publishing through
// watermill-amqp works too, but it confirms one message at a time and
// cannot take a routing key per message, so its routing key is
// bindingKey(topic); publish browser events with Publisher instead.
func (c Config) WatermillAMQPConfig(queueName wamqp.QueueNameGenerator, bindingKey func(topic string) string) wamqp.Config {
	c.setDefaults()
	if bindingKey == nil {
		bindingKey = func(string) string { return "" }
	}
	url := ""
	if len(c.URLs) > 0 {
		url = c.URLs[0]
	}
	amqpCfg := c.AMQP
	byName := make(map[string]topicExchange, len(c.Exchanges))
	for topic, e := range c.Exchanges {
		byName[e.Name] = topicExchange{topic: topic, Exchange: e}
	}
	exchangeName := func(topic string) string {
		if e, ok := c.Exchanges[topic]; ok {
			return e.Name
		}
		return topic
	}
	return wamqp.Config{
		Connection: wamqp.ConnectionConfig{AmqpURI: url, AmqpConfig: &amqpCfg},
		Marshaler:  c.Marshaler,
		Exchange: wamqp.ExchangeConfig{
			GenerateName: exchangeName,
			Type:         KindTopic, // per-exchange kinds come from the topology builder
			Durable:      true,
		},
		Queue:     wamqp.QueueConfig{GenerateName: queueName, Durable: true},
		QueueBind: wamqp.QueueBindConfig{GenerateRoutingKey: bindingKey},
		Publish: wamqp.PublishConfig{
			GenerateRoutingKey: bindingKey,
			Mandatory:          c.Mandatory,
			ConfirmDelivery:    true,
			ChannelPoolSize:    1, // without a pool it opens a channel per publish
		},
		Consume:         wamqp.ConsumeConfig{Qos: wamqp.QosConfig{PrefetchCount: 10}},
		TopologyBuilder: topologyBuilder{byName: byName, bindingKey: bindingKey},
	}
}

type topicExchange struct {
	topic string
	Exchange
}

// topologyBuilder declares each exchange with its own kind (watermill-amqp's
// default builder has one kind for all) and binds with the topic's key
// (watermill-amqp v2.1.3 passes the queue name to GenerateRoutingKey).
type topologyBuilder struct {
	byName     map[string]topicExchange
	bindingKey func(topic string) string
}

func (b topologyBuilder) ExchangeDeclare(ch *amqp.Channel, name string, _ wamqp.Config) error {
	e, ok := b.byName[name]
	if !ok {
		return fmt.Errorf("durablews: exchange %q is not in Config.Exchanges", name)
	}
	if e.Passive {
		return ch.ExchangeDeclarePassive(e.Name, e.Kind, true, false, false, false, nil)
	}
	return ch.ExchangeDeclare(e.Name, e.Kind, true, false, false, false, nil)
}

func (b topologyBuilder) BuildTopology(ch *amqp.Channel, queueName, exchangeName string, cfg wamqp.Config, logger watermill.LoggerAdapter) error {
	if _, err := ch.QueueDeclare(queueName, true, false, false, false, cfg.Queue.Arguments); err != nil {
		return fmt.Errorf("durablews: declare queue %q: %w", queueName, err)
	}
	if err := b.ExchangeDeclare(ch, exchangeName, cfg); err != nil {
		return fmt.Errorf("durablews: declare exchange %q: %w", exchangeName, err)
	}
	e := b.byName[exchangeName]
	key := ""
	if e.needsRoutingKey() {
		key = b.bindingKey(e.topic)
	}
	if err := ch.QueueBind(queueName, key, exchangeName, false, nil); err != nil {
		return fmt.Errorf("durablews: bind queue %q to %q with %q: %w", queueName, exchangeName, key, err)
	}
	logger.Debug("Queue bound", watermill.LogFields{"queue": queueName, "exchange": exchangeName, "binding_key": key})
	return nil
}
