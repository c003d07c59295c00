package durablews

import (
	"fmt"
	"maps"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v2/pkg/amqp"
	amqp "github.com/rabbitmq/amqp091-go"
)

// WatermillAMQPConfig returns a watermill-amqp configuration that shares
// this Config's first broker URL, exchanges (name and kind per topic from
// Exchanges or ExchangeFor, durable, Passive honoured), marshaler (so a watermill-amqp subscriber
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
	c.Exchanges = maps.Clone(c.Exchanges) // setDefaults writes to it; the caller's map stays as it was
	c.setDefaults()
	if bindingKey == nil {
		bindingKey = func(string) string { return "" }
	}
	url := ""
	if len(c.URLs) > 0 {
		url = c.URLs[0]
	}
	amqpCfg := c.AMQP
	topo := &topologyBuilder{cfg: c, bindingKey: bindingKey}
	return wamqp.Config{
		Connection: wamqp.ConnectionConfig{AmqpURI: url, AmqpConfig: &amqpCfg},
		Marshaler:  c.Marshaler,
		Exchange: wamqp.ExchangeConfig{
			GenerateName: topo.exchangeName,
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
		TopologyBuilder: topo,
	}
}

type topicExchange struct {
	topic string
	Exchange
}

// topologyBuilder declares each exchange with its own kind (watermill-amqp's
// default builder has one kind for all) and binds with the topic's key
// (watermill-amqp v2.1.3 passes the queue name to GenerateRoutingKey).
// watermill-amqp names the exchange from the topic and later asks to
// declare it by name, so exchangeName remembers which topic a name came
// from (topics from Config.ExchangeFor are not known in advance).
type topologyBuilder struct {
	cfg        Config
	bindingKey func(topic string) string
	byName     sync.Map // exchange name -> topicExchange
}

func (b *topologyBuilder) exchangeName(topic string) string {
	e, err := b.cfg.exchangeFor(topic)
	if err != nil {
		return topic // ExchangeDeclare then says the topic is unknown
	}
	b.byName.LoadOrStore(e.Name, topicExchange{topic: topic, Exchange: e})
	return e.Name
}

func (b *topologyBuilder) exchange(name string) (topicExchange, error) {
	if e, ok := b.byName.Load(name); ok {
		return e.(topicExchange), nil
	}
	_, err := b.cfg.exchangeFor(name)
	return topicExchange{}, fmt.Errorf("durablews: no exchange for %q: %w", name, err)
}

func (b *topologyBuilder) ExchangeDeclare(ch *amqp.Channel, name string, _ wamqp.Config) error {
	e, err := b.exchange(name)
	if err != nil {
		return err
	}
	if e.Passive {
		return ch.ExchangeDeclarePassive(e.Name, e.Kind, true, false, false, false, nil)
	}
	return ch.ExchangeDeclare(e.Name, e.Kind, true, false, false, false, nil)
}

func (b *topologyBuilder) BuildTopology(ch *amqp.Channel, queueName, exchangeName string, cfg wamqp.Config, logger watermill.LoggerAdapter) error {
	if _, err := ch.QueueDeclare(queueName, true, false, false, false, cfg.Queue.Arguments); err != nil {
		return fmt.Errorf("durablews: declare queue %q: %w", queueName, err)
	}
	if err := b.ExchangeDeclare(ch, exchangeName, cfg); err != nil {
		return fmt.Errorf("durablews: declare exchange %q: %w", exchangeName, err)
	}
	e, _ := b.exchange(exchangeName) // declared just above
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
