// Command killrepro measures how often RabbitMQ loses a durable queue that
// was declared just before the broker process was killed (kill -9), with a
// persistent message already confirmed into it.
//
// Each round declares -queues durable queues on a private node (its own
// ports and data folder, never the machine's shared broker), publishes one
// persistent message into each and waits for its publisher confirm, waits
// -delay, kills the node with SIGKILL, starts it again and checks every
// queue of the round with a passive declare. -load busy goroutines keep the
// CPUs occupied meanwhile, which is when the loss shows up. With -bind each
// queue is also bound to a durable topic exchange (as tabsession.Handler does) and
// its message goes through the exchange; after the restart a mandatory
// probe per queue checks that the binding survived too.
//
//	go run ./internal/testbroker/cmd/killrepro -rounds 12 -load 2
//
// -trap shows the cause deterministically: RabbitMQ answers bind-ok (and
// declare-ok) before Mnesia's commit decision for the change is on disk,
// so a kill -9 in that window undoes it (see testbroker's SyncMetadata).
// -flood runs the chaos test's shape without the publisher under test
// (8 goroutines publishing with confirms to three bound queues while the
// node is killed) and checks every queue takes every message confirmed
// after the restart; -fresh starts a new node for every round, as the
// chaos test does.
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
	bind := flag.Bool("bind", false, "bind each queue to a durable exchange, publish through it, and check the bindings after the restart")
	floodMode := flag.Bool("flood", false, "the chaos test's shape: kill while 8 goroutines publish to -queues queues bound to one topic exchange, then check each queue takes every message confirmed after the restart")
	fresh := flag.Bool("fresh", false, "a new node for every round (the chaos test starts a fresh node)")
	killAfter := flag.Duration("kill-after", 0, "with -flood: publish this long before the kill (0 = random 0.5-1.5 s)")
	trapMode := flag.Bool("trap", false, "show deterministically why a binding made just before a kill -9 can vanish (its Mnesia commit decision is logged after bind-ok)")
	flag.Parse()
	var err error
	if *trapMode {
		err = trap()
	} else if *floodMode {
		err = flood(*rounds, *queues, *fresh, *killAfter)
	} else {
		err = run(*rounds, *queues, *delay, *load, *bind, *fresh)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "killrepro:", err)
		os.Exit(1)
	}
}

const exchange = "killrepro"

func run(rounds, queues int, delay time.Duration, load int, bind, fresh bool) error {
	var n *testbroker.Node
	defer func() {
		if n != nil {
			_ = n.Close()
		}
	}()

	var stop atomic.Bool
	defer stop.Store(true)
	for range load {
		go func() {
			for x := 0; !stop.Load(); x++ {
				_ = x * x
			}
		}()
	}

	lostQueues, lostLast, lostMsgs, lostBindings := 0, 0, 0, 0
	for r := range rounds {
		if n == nil || fresh {
			if n != nil {
				_ = n.Close()
			}
			var err error
			if n, err = startNode(bind); err != nil {
				return err
			}
		}
		names := make([]string, queues)
		c, err := amqp.Dial(n.AMQPURL())
		if err != nil {
			return err
		}
		for i := range names {
			names[i] = fmt.Sprintf("killrepro-%d-%d", r, i)
			if err := declareAndConfirm(c, names[i], bind); err != nil {
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
			if bind {
				routed, err := probeBinding(c, q)
				if err != nil {
					return fmt.Errorf("round %d: probe %s: %w", r+1, q, err)
				}
				if !routed {
					lostBindings++
					fmt.Printf("round %d: queue %d of %d (%s) lost its binding to %q\n", r+1, i+1, len(names), q, exchange)
					for _, tab := range []string{"rabbit_durable_route", "rabbit_route"} {
						out, err := n.Ctl("eval", "ets:tab2list("+tab+").")
						fmt.Printf("%s (err %v):\n%s\n", tab, err, out)
					}
				}
			}
		}
		_ = c.Close()
	}
	fmt.Printf("killrepro: %d rounds x %d queues, delay %v, load %d, bind %v, fresh %v: %d queues lost (%d of them the last declared before the kill), %d messages lost from surviving queues, %d bindings lost\n",
		rounds, queues, delay, load, bind, fresh, lostQueues, lostLast, lostMsgs, lostBindings)
	return nil
}

// declareAndConfirm declares a durable queue (with bind: bound to the
// exchange with its own name as key) and publishes one persistent message
// into it, returning once the broker confirmed it.
func declareAndConfirm(c *amqp.Connection, q string, bind bool) error {
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		return err
	}
	ex := ""
	if bind {
		if err := ch.QueueBind(q, q, exchange, false, nil); err != nil {
			return err
		}
		ex = exchange
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, ex, q, true, false, amqp.Publishing{
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

// probeBinding publishes a mandatory, transient message to the exchange
// with q as routing key and reports whether it was routed (not returned),
// then removes it again.
func probeBinding(c *amqp.Connection, q string) (bool, error) {
	ch, err := c.Channel()
	if err != nil {
		return false, err
	}
	defer ch.Close()
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	if err := ch.Confirm(false); err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, q, true, false, amqp.Publishing{Body: []byte("probe")})
	if err != nil {
		return false, err
	}
	if _, err := dc.WaitContext(ctx); err != nil {
		return false, err
	}
	// amqp091-go hands a basic.return over before the ack that follows it.
	select {
	case <-returns:
		return false, nil
	default:
	}
	_, err = ch.QueuePurge(q, false)
	return true, err
}

// startNode starts a private node and, with bind, declares the exchange.
func startNode(bind bool) (*testbroker.Node, error) {
	n, err := testbroker.StartNode(testbroker.Options{Plugins: []string{}, NamePrefix: "killrepro"})
	if err != nil || !bind {
		return n, err
	}
	c, err := amqp.Dial(n.AMQPURL())
	if err == nil {
		var ch *amqp.Channel
		if ch, err = c.Channel(); err == nil {
			err = ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil)
		}
		_ = c.Close()
	}
	if err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}
