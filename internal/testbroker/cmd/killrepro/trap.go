package main

import (
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/testbroker"
)

// trap shows why a binding made shortly before a kill -9 can vanish on
// RabbitMQ 3.10.8, deterministically: the binding's Mnesia commit decision
// is logged by the mnesia_recover process after the broker answered
// bind-ok. Holding that process (as a loaded scheduler delays it) and
// killing the node loses a binding the client was told exists; letting it
// run and syncing the log (testbroker's SyncMetadata) keeps it.
func trap() error {
	n, err := testbroker.StartNode(testbroker.Options{Plugins: []string{}, NamePrefix: "killrepro"})
	if err != nil {
		return err
	}
	defer n.Close()
	for _, synced := range []bool{false, true} {
		q := fmt.Sprintf("trap-synced-%v", synced)
		c, err := amqp.Dial(n.AMQPURL())
		if err != nil {
			return err
		}
		ch, err := c.Channel()
		if err == nil {
			err = ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil)
		}
		if err == nil {
			_, err = ch.QueueDeclare(q, true, false, false, false, nil)
		}
		if err == nil {
			err = n.SyncMetadata() // the exchange and queue are not the point
		}
		if err != nil {
			return err
		}
		if out, err := n.Ctl("eval", "sys:suspend(mnesia_recover)."); err != nil {
			return fmt.Errorf("suspend mnesia_recover: %w: %s", err, out)
		}
		if err := ch.QueueBind(q, "customer.#", exchange, false, nil); err != nil {
			return err
		}
		_ = c.Close()
		before, err := hasBinding(n, q)
		if err != nil {
			return err
		}
		if synced {
			if out, err := n.Ctl("eval", "sys:resume(mnesia_recover)."); err != nil {
				return fmt.Errorf("resume mnesia_recover: %w: %s", err, out)
			}
			if err := n.SyncMetadata(); err != nil {
				return err
			}
		}
		if err := n.Kill(); err != nil {
			return err
		}
		if err := n.StartAgain(); err != nil {
			if err := n.StartAgain(); err != nil {
				return err
			}
		}
		after, err := hasBinding(n, q)
		if err != nil {
			return err
		}
		how := "kill -9 while mnesia_recover still holds the commit decision"
		if synced {
			how = "SyncMetadata, then kill -9"
		}
		fmt.Printf("killrepro -trap: bind-ok received, binding listed before the kill: %v; %s; binding after the restart: %v\n", before, how, after)
	}
	return nil
}

func hasBinding(n *testbroker.Node, q string) (bool, error) {
	out, err := n.Ctl("list_bindings", "source_name", "destination_name", "routing_key")
	if err != nil {
		return false, fmt.Errorf("list_bindings: %w: %s", err, out)
	}
	return strings.Contains(out, exchange+"\t"+q+"\tcustomer.#"), nil
}
