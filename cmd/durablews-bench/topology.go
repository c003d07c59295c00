package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/stomptab"
)

// leakGuard is the x-expires every bench queue is declared with, so that
// queues of a killed bench run disappear from the shared broker by
// themselves. It does not affect throughput (tab queues carry one too).
const leakGuard = 15 * time.Minute

// topology owns everything the bench creates on the broker: one durable
// topic exchange per run and the queues of each scenario. It remembers
// every name it created so that Cleanup can delete them, and so that the
// test can check that nothing was left behind.
type topology struct {
	conn     *amqp.Connection
	exchange string

	mu      sync.Mutex
	queues  map[string]bool // alive
	created []string        // every queue ever declared (for the leak check)
	// further exchanges (the receipts scenario's), alive and ever declared
	exchanges        map[string]bool
	createdExchanges []string
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newTopology(amqpURL string) (*topology, error) {
	cfg := amqp.Config{Properties: amqp.NewConnectionProperties()}
	cfg.Properties.SetClientConnectionName("durablews-bench-admin")
	conn, err := amqp.DialConfig(amqpURL, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s (is RabbitMQ running? `make broker`): %w", amqpURL, err)
	}
	t := &topology{conn: conn, exchange: "durablews-bench-" + randomHex(4), queues: map[string]bool{}, exchanges: map[string]bool{}}
	if err := t.do(func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare(t.exchange, amqp.ExchangeTopic, true, false, false, false, nil)
	}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("declare exchange %s: %w", t.exchange, err)
	}
	return t, nil
}

// do runs f on a fresh channel (a failed operation closes its channel).
func (t *topology) do(f func(ch *amqp.Channel) error) error {
	ch, err := t.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return f(ch)
}

// declareQueues declares n durable queues (tab-style names when tab is
// set, like a browser's SUBSCRIBE would) bound to the exchange with
// bindingKey.
func (t *topology) declareQueues(prefix string, n int, bindingKey string, tab bool) ([]string, error) {
	names := make([]string, n)
	for i := range names {
		if tab {
			names[i] = stomptab.RandomQueueName(prefix)
		} else {
			names[i] = fmt.Sprintf("%s-%s-q%d", t.exchange, prefix, i)
		}
	}
	t.mu.Lock()
	for _, q := range names {
		t.queues[q] = true
		t.created = append(t.created, q)
	}
	t.mu.Unlock()
	args := amqp.Table{"x-expires": int64(leakGuard / time.Millisecond)}
	err := t.do(func(ch *amqp.Channel) error {
		// Pipelined with no-wait (1,000 queues otherwise take 2,000 round
		// trips); a failure closes the channel and the final synchronous
		// passive declare reports it.
		for _, q := range names {
			if _, err := ch.QueueDeclare(q, true, false, false, true, args); err != nil {
				return err
			}
			if err := ch.QueueBind(q, bindingKey, t.exchange, true, nil); err != nil {
				return err
			}
		}
		_, err := ch.QueueDeclarePassive(names[len(names)-1], true, false, false, false, args)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("declare %d queues: %w", n, err)
	}
	return names, nil
}

// purge empties the queues, so that every measurement starts from empty
// queues.
func (t *topology) purge(queues []string) error {
	return t.do(func(ch *amqp.Channel) error {
		for _, q := range queues {
			if _, err := ch.QueuePurge(q, false); err != nil {
				return fmt.Errorf("purge %s: %w", q, err)
			}
		}
		return nil
	})
}

// deleteQueues deletes the queues (missing ones are fine).
func (t *topology) deleteQueues(queues []string) error {
	var errs []error
	err := t.do(func(ch *amqp.Channel) error {
		for _, q := range queues {
			if _, err := ch.QueueDelete(q, false, false, true); err != nil {
				return err
			}
		}
		// Synchronise: the no-wait deletes are done once this answers.
		return ch.ExchangeDeclarePassive(t.exchange, amqp.ExchangeTopic, true, false, false, false, nil)
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("delete queues: %w", err))
	}
	t.mu.Lock()
	for _, q := range queues {
		delete(t.queues, q)
	}
	t.mu.Unlock()
	return errors.Join(errs...)
}

// track records queues declared by someone else (a tab's SUBSCRIBE) so
// that Cleanup deletes them too.
func (t *topology) track(queues ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, q := range queues {
		t.queues[q] = true
		t.created = append(t.created, q)
	}
}

// declareExchange records name (so that Cleanup deletes it) and declares
// it with declare.
func (t *topology) declareExchange(name string, declare func(ch *amqp.Channel) error) error {
	t.mu.Lock()
	t.exchanges[name] = true
	t.createdExchanges = append(t.createdExchanges, name)
	t.mu.Unlock()
	if err := t.do(declare); err != nil {
		return fmt.Errorf("declare exchange %s: %w", name, err)
	}
	return nil
}

// deleteExchange deletes an exchange declareExchange declared.
func (t *topology) deleteExchange(name string) error {
	err := t.do(func(ch *amqp.Channel) error { return ch.ExchangeDelete(name, false, false) })
	t.mu.Lock()
	delete(t.exchanges, name)
	t.mu.Unlock()
	if err != nil {
		return fmt.Errorf("delete exchange %s: %w", name, err)
	}
	return nil
}

// Cleanup deletes every queue still alive and the exchanges, then closes
// the connection. It reconnects if the connection was lost.
func (t *topology) Cleanup(amqpURL string) error {
	if t.conn.IsClosed() {
		conn, err := amqp.Dial(amqpURL)
		if err != nil {
			return fmt.Errorf("cleanup: reconnect: %w", err)
		}
		t.conn = conn
	}
	defer t.conn.Close()
	t.mu.Lock()
	var alive []string
	for q := range t.queues {
		alive = append(alive, q)
	}
	t.mu.Unlock()
	var errs []error
	if len(alive) > 0 {
		if err := t.deleteQueues(alive); err != nil {
			errs = append(errs, err)
		}
	}
	t.mu.Lock()
	exchanges := []string{t.exchange}
	for x := range t.exchanges {
		exchanges = append(exchanges, x)
	}
	t.mu.Unlock()
	for _, x := range exchanges {
		if err := t.do(func(ch *amqp.Channel) error { return ch.ExchangeDelete(x, false, false) }); err != nil {
			errs = append(errs, fmt.Errorf("delete exchange %s: %w", x, err))
		}
	}
	return errors.Join(errs...)
}

// Leftovers reports which of the names the bench created still exist
// (used by the test). conn must be another live connection.
func Leftovers(conn *amqp.Connection, exchanges []string, queues []string) ([]string, error) {
	var left []string
	check := func(f func(ch *amqp.Channel) error) (bool, error) {
		ch, err := conn.Channel()
		if err != nil {
			return false, err
		}
		defer ch.Close()
		err = f(ch)
		var ae *amqp.Error
		if errors.As(err, &ae) && ae.Code == amqp.NotFound {
			return false, nil
		}
		return err == nil, err
	}
	for _, x := range exchanges {
		ok, err := check(func(ch *amqp.Channel) error {
			return ch.ExchangeDeclarePassive(x, amqp.ExchangeTopic, true, false, false, false, nil)
		})
		if err != nil {
			return nil, err
		}
		if ok {
			left = append(left, "exchange "+x)
		}
	}
	for _, q := range queues {
		ok, err := check(func(ch *amqp.Channel) error {
			_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
			return err
		})
		if err != nil {
			return nil, err
		}
		if ok {
			left = append(left, "queue "+q)
		}
	}
	return left, nil
}
