package receipts

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
	"github.com/durablews/durablews/internal/defaults"
)

// DefaultPrefetchCount is Config.PrefetchCount's default.
const DefaultPrefetchCount = 50

// Config configures a Subscriber. Zero fields get defaults in
// NewSubscriber.
type Config struct {
	// URL of the broker, e.g. "amqp://user:pass@host:5672/vhost".
	// Required. The user needs configure, write and read on the queue and
	// configure and read on the exchange (the Subscriber declares both).
	URL string

	// AMQP is passed to amqp091-go's DialConfig (TLS, heartbeat, vhost,
	// client properties). Zero is amqp091-go's defaults; the connection
	// is named "durablews receipts <Queue>" unless Properties name it.
	// Leave Recovery unset: the Subscriber reconnects by itself.
	AMQP amqp.Config

	// Exchange is the receipts exchange the queue is bound to; ""
	// means DefaultExchange. The Subscriber declares it (durable, topic).
	Exchange string

	// Queue is the name of the service's durable receipts queue.
	// Required. Instances of one service share it and compete for its
	// receipts; receipts sent while every instance is down wait in it.
	// Each topic passed to Subscribe is a binding key of this queue, so
	// all subscriptions of a Subscriber read the same queue.
	Queue string

	// Quorum declares Queue as a quorum queue (replicated; for a
	// cluster). False: a classic durable queue. The type of an existing
	// queue cannot change (the declare fails with PRECONDITION_FAILED).
	Quorum bool

	// QueueArguments are further x-arguments of the queue declare, e.g.
	// x-max-length; nil for none.
	QueueArguments amqp.Table

	// PrefetchCount is the consumer's prefetch (basic.qos): batches the
	// broker sends ahead while one is being handled. Zero means
	// DefaultPrefetchCount.
	PrefetchCount int

	// OnRefused, when set, is called for each refused batch (one that
	// does not decode: malformed, another tab in its body than in its
	// routing key) with its routing key and the error, after the
	// Subscriber logged and counted it and before it acks (drops) the
	// delivery. nil: only logged and counted (Stats.Refused). It runs in
	// the subscription's goroutine: keep it short.
	OnRefused func(routingKey string, err error)

	// Now is the clock ReceivedAt is read from. nil means time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	defaults.Set(&c.Exchange, DefaultExchange)
	defaults.Set(&c.PrefetchCount, DefaultPrefetchCount)
	if c.Now == nil {
		c.Now = time.Now
	}
}

// clone copies the maps and slices of c, so the caller may change its
// Config after handing it over.
func (c Config) clone() Config {
	c.QueueArguments = maps.Clone(c.QueueArguments)
	c.AMQP.SASL = slices.Clone(c.AMQP.SASL)
	c.AMQP.Properties = maps.Clone(c.AMQP.Properties)
	if c.AMQP.TLSClientConfig != nil {
		c.AMQP.TLSClientConfig = c.AMQP.TLSClientConfig.Clone()
	}
	return c
}

// Validate reports every invalid field at once; each message names the
// field and says what to do. NewSubscriber calls it after filling
// defaults, so a zero Exchange or PrefetchCount is fine there.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("receipts: invalid config: "+format, args...))
	}
	if c.URL == "" {
		bad("URL is empty: give the broker URL like amqp://guest:guest@127.0.0.1:5672/")
	} else if err := amqpconn.ValidateURL(c.URL); err != nil {
		bad("URL %q: %v", amqpconn.RedactURL(c.URL), err)
	}
	if err := amqpconn.CheckConfig(c.AMQP); err != nil {
		bad("%v", err)
	}
	switch {
	case c.Queue == "":
		bad("Queue is empty: name the service's durable receipts queue, e.g. \"orders.receipts\"")
	case len(c.Queue) > maxField:
		bad("Queue is %d bytes, over the AMQP limit of %d", len(c.Queue), maxField)
	}
	if err := checkExchangeName(c.Exchange); err != nil {
		bad("Exchange: %v", err)
	}
	if c.PrefetchCount < 0 || c.PrefetchCount > 65535 {
		bad("PrefetchCount %d must be between 0 and 65535", c.PrefetchCount)
	}
	return errors.Join(errs...)
}

// queue is the Queue a subscription to bindingKey declares.
func (c Config) queue(bindingKey string) Queue {
	return Queue{Name: c.Queue, Exchange: c.Exchange, BindingKeys: []string{bindingKey}, Quorum: c.Quorum, Arguments: c.QueueArguments}
}
