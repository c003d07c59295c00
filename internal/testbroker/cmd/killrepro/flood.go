package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/testbroker"
)

// flood is the chaos test's shape without the publisher under test: a fresh
// node (with -fresh) or a fresh topic exchange with queues tab queues bound
// by "customer.#", 8 goroutines publishing persistent messages with
// confirms, a kill -9 while they publish, a restart, and then a check that
// every queue takes every message confirmed after the restart: each queue's
// depth must grow by exactly the number confirmed.
func flood(rounds, queues int, fresh bool, killAfter time.Duration) error {
	var n *testbroker.Node
	defer func() {
		if n != nil {
			_ = n.Close()
		}
	}()
	bad := 0
	for r := range rounds {
		if n == nil || fresh {
			if n != nil {
				_ = n.Close()
			}
			var err error
			if n, err = testbroker.StartNode(testbroker.Options{Plugins: []string{}, NamePrefix: "killrepro"}); err != nil {
				return err
			}
		}
		ex := fmt.Sprintf("flood-%d", r)
		names := make([]string, queues)
		c, err := amqp.Dial(n.AMQPURL())
		if err != nil {
			return err
		}
		ch, err := c.Channel()
		if err != nil {
			return err
		}
		if err := ch.ExchangeDeclare(ex, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			return err
		}
		for i := range names {
			names[i] = fmt.Sprintf("tab-flood-%d-%d", r, i)
			if _, err := ch.QueueDeclare(names[i], true, false, false, false, nil); err != nil {
				return err
			}
			if err := ch.QueueBind(names[i], "customer.#", ex, false, nil); err != nil {
				return err
			}
		}
		_ = c.Close()

		// Publish until the kill; count confirms.
		var confirmed atomic.Int64
		pc, err := amqp.Dial(n.AMQPURL())
		if err != nil {
			return err
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = publishN(pc, ex, g, 1<<30, &confirmed)
			}()
		}
		wait := killAfter
		if wait <= 0 {
			wait = time.Duration(500+rand.IntN(1000)) * time.Millisecond
		}
		time.Sleep(wait)
		if err := n.Kill(); err != nil {
			return err
		}
		wg.Wait()
		_ = pc.Close()
		time.Sleep(500 * time.Millisecond)
		if err := n.StartAgain(); err != nil {
			fmt.Printf("round %d: restart failed, retrying: %.200v\n", r+1, err)
			if err := n.StartAgain(); err != nil {
				return err
			}
		}

		c, err = amqp.Dial(n.AMQPURL())
		if err != nil {
			return err
		}
		before, err := depths(c, names)
		if err != nil {
			return fmt.Errorf("round %d: after restart: %w", r+1, err)
		}
		var after atomic.Int64
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := publishN(c, ex, g, 500, &after); err != nil {
					fmt.Printf("round %d: publish after restart: %v\n", r+1, err)
				}
			}()
		}
		wg.Wait()
		now, err := depths(c, names)
		if err != nil {
			return fmt.Errorf("round %d: after publishing: %w", r+1, err)
		}
		var problems []string
		for i, q := range names {
			if got := now[i] - before[i]; int64(got) != after.Load() {
				problems = append(problems, fmt.Sprintf("%s got %d of %d (depth %d -> %d)", q, got, after.Load(), before[i], now[i]))
			}
			if int64(before[i]) < confirmed.Load() {
				problems = append(problems, fmt.Sprintf("%s holds %d after the restart, %d were confirmed before the kill", q, before[i], confirmed.Load()))
			}
		}
		fmt.Printf("round %d: kill %v after the first publish, %d confirmed before it, depths after restart %v, %d confirmed after, depths %v\n",
			r+1, wait, confirmed.Load(), before, after.Load(), now)
		if len(problems) > 0 {
			bad++
			fmt.Printf("round %d: LOSS: %s\n", r+1, strings.Join(problems, "; "))
			for _, args := range [][]string{
				{"list_queues", "name", "state", "pid", "messages"},
				{"list_bindings", "source_name", "destination_name", "routing_key"},
			} {
				out, err := n.Ctl(args...)
				fmt.Printf("--- %v (err %v)\n%s\n", args, err, out)
			}
			fmt.Println(n.LogTail(80))
		}
		// Remove this round's queues so the next kill recovers little.
		ch, err = c.Channel()
		if err == nil {
			for _, q := range names {
				_, _ = ch.QueueDelete(q, false, false, false)
			}
			_ = ch.ExchangeDelete(ex, false, false)
		}
		_ = c.Close()
	}
	fmt.Printf("killrepro -flood: %d rounds x %d queues, fresh %v: %d rounds where a queue missed confirmed messages\n", rounds, queues, fresh, bad)
	return nil
}

// publishN publishes up to count persistent messages from goroutine g with
// a window of 50 unconfirmed, adding each ack to confirmed, until the
// connection closes.
func publishN(c *amqp.Connection, ex string, g, count int, confirmed *atomic.Int64) error {
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	var window []*amqp.DeferredConfirmation
	ctx := context.Background()
	settle := func(dc *amqp.DeferredConfirmation) error {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("nacked or channel closed")
		}
		confirmed.Add(1)
		return nil
	}
	for i := range count {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, ex, fmt.Sprintf("customer.%d.e", g), false, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, MessageId: fmt.Sprintf("%d-%d", g, i), Body: []byte(fmt.Sprintf(`{"g":%d,"i":%d}`, g, i)),
		})
		if err != nil {
			return err
		}
		window = append(window, dc)
		if len(window) == 50 {
			if err := settle(window[0]); err != nil {
				return err
			}
			window = window[1:]
		}
	}
	for _, dc := range window {
		if err := settle(dc); err != nil {
			return err
		}
	}
	return nil
}

func depths(c *amqp.Connection, names []string) ([]int, error) {
	ch, err := c.Channel()
	if err != nil {
		return nil, err
	}
	defer ch.Close()
	d := make([]int, len(names))
	for i, q := range names {
		qi, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", q, err)
		}
		d[i] = qi.Messages
	}
	return d, nil
}
