// Command killrepro measures how often RabbitMQ loses a durable queue that
// was declared just before the broker process was killed (kill -9), with a
// persistent message already confirmed into it.
//
// Each round declares -queues durable queues on a private node (its own
// ports and data folder, never the machine's shared broker), publishes one
// persistent message into each and waits for its publisher confirm, waits
// -delay, kills the node with SIGKILL, starts it again and checks every
// queue of the round with a passive declare. -load busy goroutines keep the
// CPUs occupied meanwhile, which is when the loss shows up.
//
//	go run ./internal/testbroker/cmd/killrepro -rounds 12 -load 2
//
// The result on RabbitMQ 3.10.8 is in the README (Guarantees).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/testbroker"
)

func main() {
	rounds := flag.Int("rounds", 10, "kill -9 + restart cycles")
	queues := flag.Int("queues", 10, "durable queues declared (one confirmed message each) per round")
	delay := flag.Duration("delay", 0, "wait between the last confirm and the kill")
	load := flag.Int("load", runtime.NumCPU(), "busy goroutines occupying the CPUs during the run (0 = none)")
	flag.Parse()
	if err := run(*rounds, *queues, *delay, *load); err != nil {
		fmt.Fprintln(os.Stderr, "killrepro:", err)
		os.Exit(1)
	}
}

func run(rounds, queues int, delay time.Duration, load int) error {
	n, err := testbroker.StartNode(testbroker.Options{Plugins: []string{}, NamePrefix: "killrepro"})
	if err != nil {
		return err
	}
	defer n.Close()

	var stop atomic.Bool
	defer stop.Store(true)
	for range load {
		go func() {
			for x := 0; !stop.Load(); x++ {
				_ = x * x
			}
		}()
	}

	lostQueues, lostLast, lostMsgs := 0, 0, 0
	for r := range rounds {
		names := make([]string, queues)
		c, err := amqp.Dial(n.AMQPURL())
		if err != nil {
			return err
		}
		for i := range names {
			names[i] = fmt.Sprintf("killrepro-%d-%d", r, i)
			if err := declareAndConfirm(c, names[i]); err != nil {
				return fmt.Errorf("round %d: %w", r, err)
			}
		}
		_ = c.Close()
		time.Sleep(delay)
		if err := n.Kill(); err != nil {
			return err
		}
		if err := n.StartAgain(); err != nil {
			// The first boot after a kill -9 rarely fails on a loaded machine.
			if err := n.StartAgain(); err != nil {
				return err
			}
		}
		c, err = amqp.Dial(n.AMQPURL())
		if err != nil {
			return err
		}
		for i, q := range names {
			ch, err := c.Channel()
			if err != nil {
				return err
			}
			qi, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
			switch {
			case err != nil:
				lostQueues++
				if i == len(names)-1 {
					lostLast++
				}
				fmt.Printf("round %d: queue %d of %d (%s) is gone after the restart: %v\n", r+1, i+1, len(names), q, err)
				continue
			case qi.Messages != 1:
				lostMsgs++
				fmt.Printf("round %d: queue %s holds %d messages, want 1\n", r+1, q, qi.Messages)
			}
			_ = ch.Close()
		}
		_ = c.Close()
	}
	fmt.Printf("killrepro: %d rounds x %d queues, delay %v, load %d: %d queues lost (%d of them the last declared before the kill), %d messages lost from surviving queues\n",
		rounds, queues, delay, load, lostQueues, lostLast, lostMsgs)
	return nil
}

// declareAndConfirm declares a durable queue and publishes one persistent
// message into it, returning once the broker confirmed it.
func declareAndConfirm(c *amqp.Connection, q string) error {
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q, true, false, amqp.Publishing{
		DeliveryMode: amqp.Persistent, Body: []byte(q),
	})
	if err != nil {
		return err
	}
	if ok, err := dc.WaitContext(ctx); err != nil || !ok {
		return fmt.Errorf("publish to %s not confirmed (acked %v): %v", q, ok, err)
	}
	return nil
}
