package receipts

import (
	"errors"
	"fmt"
	"maps"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
)

// DefaultBindingKey binds every receipt of the exchange: every user and
// tab.
const DefaultBindingKey = "#"

// Queue is a service's durable receipts queue: where the receipts it
// consumes wait while it is down (a restarted service loses none).
type Queue struct {
	// Name of the queue. Required. Every instance of a service shares it
	// (the instances compete for receipts); give each service its own,
	// e.g. "orders.receipts".
	Name string
	// Exchange it is bound to; "" means DefaultExchange.
	Exchange string
	// BindingKeys are the patterns bound, e.g. "#" (every receipt) or
	// "*.k3xq7r2m4a6b8c2d" (one tab). Empty means DefaultBindingKey.
	BindingKeys []string
	// Quorum declares a quorum queue (x-queue-type quorum): replicated,
	// for a cluster. False declares a classic durable queue. A queue that
	// exists with the other type makes the declare fail
	// (PRECONDITION_FAILED); the type cannot change. On RabbitMQ 4.x a
	// quorum queue gets x-delivery-limit -1 unless Arguments set one:
	// 4.x drops a message after 20 deliveries by default, and a batch
	// whose consumer keeps losing its connection is delivered again and
	// again (nothing is sent on 3.x, where there is no such default).
	Quorum bool
	// Arguments are further x-arguments of the queue declare (e.g.
	// x-max-length); nil for none.
	Arguments amqp.Table
}

func (q Queue) validate() error {
	var errs []error
	if q.Name == "" {
		errs = append(errs, errors.New("Name is empty: name the service's receipts queue, e.g. \"orders.receipts\""))
	} else if len(q.Name) > maxField {
		errs = append(errs, fmt.Errorf("Name is %d bytes, over the AMQP limit of %d", len(q.Name), maxField))
	}
	if q.Exchange != "" {
		if err := checkExchangeName(q.Exchange); err != nil {
			errs = append(errs, err)
		}
	}
	for i, k := range q.BindingKeys {
		if k == "" || len(k) > maxField {
			errs = append(errs, fmt.Errorf("BindingKeys[%d] %.80q must be 1 to %d bytes", i, k, maxField))
		}
	}
	return errors.Join(errs...)
}

// arguments are the declare arguments on a broker of serverVersion
// (amqpconn.BrokerVersion).
func (q Queue) arguments(serverVersion string) amqp.Table {
	args := maps.Clone(q.Arguments)
	if q.Quorum {
		if args == nil {
			args = amqp.Table{}
		}
		args[amqp.QueueTypeArg] = amqp.QueueTypeQuorum
		for k, v := range amqpconn.UnlimitedDeliveries(serverVersion) {
			if _, set := args[k]; !set {
				args[k] = v
			}
		}
	}
	return args
}

// DeclareQueue declares q's durable queue, declares its exchange
// (DeclareExchange) and binds the queue with each of q.BindingKeys, on a
// channel of its own of conn (the broker's version decides a quorum
// queue's arguments). It is idempotent. The Subscriber does the same by
// itself; call DeclareQueue at deploy time so that receipts sent before
// the service first starts wait in the queue too.
func DeclareQueue(conn *amqp.Connection, q Queue) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("receipts: declare queue %q: open channel: %w", q.Name, err)
	}
	defer func() { _ = ch.Close() }()
	return declareQueue(ch, q, amqpconn.BrokerVersion(conn))
}

func declareQueue(ch *amqp.Channel, q Queue, serverVersion string) error {
	if err := q.validate(); err != nil {
		return fmt.Errorf("receipts: queue: %w", err)
	}
	if err := DeclareExchange(ch, q.Exchange); err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(q.Name, true, false, false, false, q.arguments(serverVersion)); err != nil {
		return fmt.Errorf("receipts: declare queue %q (durable, quorum %v): %w", q.Name, q.Quorum, err)
	}
	exchange := q.Exchange
	if exchange == "" {
		exchange = DefaultExchange
	}
	keys := q.BindingKeys
	if len(keys) == 0 {
		keys = []string{DefaultBindingKey}
	}
	for _, k := range keys {
		if err := ch.QueueBind(q.Name, k, exchange, false, nil); err != nil {
			return fmt.Errorf("receipts: bind queue %q to %q with %q: %w", q.Name, exchange, k, err)
		}
	}
	return nil
}
