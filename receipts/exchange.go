package receipts

import (
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// DeclareExchange declares the receipts exchange: a durable topic exchange
// named name (DefaultExchange when ""). It is idempotent; call it at
// startup, before tabs send receipts (a SEND to a missing exchange closes
// the tab's STOMP session with an error) and before binding a queue to it.
func DeclareExchange(ch *amqp.Channel, name string) error {
	if name == "" {
		name = DefaultExchange
	}
	if err := checkExchangeName(name); err != nil {
		return err
	}
	if err := ch.ExchangeDeclare(name, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("receipts: declare exchange %q (durable, topic): %w", name, err)
	}
	return nil
}

func checkExchangeName(name string) error {
	switch {
	case len(name) > maxField:
		return fmt.Errorf("receipts: exchange name is %d bytes, over the AMQP limit of %d", len(name), maxField)
	case strings.HasPrefix(name, "amq."):
		return fmt.Errorf("receipts: exchange %q uses the reserved amq. prefix: name another exchange", name)
	}
	return nil
}
