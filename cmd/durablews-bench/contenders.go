package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v2/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews"
)

// env is what a contender publishes to in one scenario.
type env struct {
	amqpURL  string
	exchange string      // durable topic exchange, same for every contender
	key      string      // routing key; the scenario's queues are bound to it
	payload  []byte      // the message body (256 bytes by default)
	streams  *streamsRun // the streams scenario's stream and away tabs
}

// instance is one connected contender, ready to publish.
type instance interface {
	// run publishes until stop is closed, adding every message the broker
	// confirmed to confirmed as soon as its confirm is known to the caller,
	// and returns once nothing is in flight any more. The first error ends
	// the run.
	run(ctx context.Context, stop <-chan struct{}, confirmed *atomic.Int64) error
	close() error
}

// contender is one way of publishing: a library, a configuration and a
// calling shape (goroutines × messages per call).
type contender struct {
	id    string // stable id for -contenders and the ratio lines
	name  string // library and configuration
	shape string // how it is called
	start func(ctx context.Context, e *env) (instance, error)
}

// --- durablews ---

func durablewsContender(goroutines, batch int) contender {
	return contender{
		id:    fmt.Sprintf("durablews-%dx%d", goroutines, batch),
		name:  "durablews Publisher (defaults: 1 channel, 256 in flight)",
		shape: shapeName(goroutines, batch),
		start: func(ctx context.Context, e *env) (instance, error) {
			cfg := durablews.NewConfig(e.amqpURL, durablews.Exchange{Name: e.exchange, Kind: durablews.KindTopic})
			p, err := durablews.NewPublisher(cfg, nil)
			if err != nil {
				return nil, err
			}
			return publisherInstance(p, goroutines, batch, e), nil
		},
	}
}

// --- watermill-amqp ---

// wamqpContender is watermill-amqp v2.1.3's publisher with the same
// durability: durable topic exchange, persistent messages
// (DefaultMarshaler), ConfirmDelivery. pool 0 is its default provider,
// which opens (and confirm.selects, and closes) a channel per Publish call.
func wamqpContender(pool, goroutines, batch int) contender {
	cfgName := "watermill-amqp v2.1.3 default (channel per Publish)"
	if pool > 0 {
		cfgName = fmt.Sprintf("watermill-amqp v2.1.3 ChannelPoolSize %d", pool)
	}
	return contender{
		id:    fmt.Sprintf("wamqp-pool%d-%dx%d", pool, goroutines, batch),
		name:  cfgName,
		shape: shapeName(goroutines, batch),
		start: func(ctx context.Context, e *env) (instance, error) {
			cfg := wamqp.NewDurablePubSubConfig(e.amqpURL, nil)
			cfg.Exchange = wamqp.ExchangeConfig{
				GenerateName: func(string) string { return e.exchange },
				Type:         amqp.ExchangeTopic,
				Durable:      true,
			}
			cfg.Publish.GenerateRoutingKey = func(string) string { return e.key }
			cfg.Publish.ConfirmDelivery = true
			cfg.Publish.ChannelPoolSize = pool
			p, err := wamqp.NewPublisher(cfg, watermill.NopLogger{})
			if err != nil {
				return nil, err
			}
			return publisherInstance(p, goroutines, batch, e), nil
		},
	}
}

func shapeName(goroutines, batch int) string {
	g := "1 goroutine"
	if goroutines > 1 {
		g = fmt.Sprintf("%d goroutines", goroutines)
	}
	if batch == 1 {
		return g + " × 1 msg/call"
	}
	return fmt.Sprintf("%s × %d msgs/call", g, batch)
}

// messageRings pre-builds distinct messages per goroutine, reused
// round-robin, so that the measured window holds only the publishing
// (allocations included) and not the building of messages.
func messageRings(goroutines, batch int, e *env) [][]*message.Message {
	per := batch * max(1, 1024/batch)
	rings := make([][]*message.Message, goroutines)
	for g := range rings {
		rings[g] = make([]*message.Message, per)
		for i := range rings[g] {
			m := message.NewMessage(watermill.NewUUID(), e.payload)
			m.Metadata.Set(durablews.RoutingKeyMetadataKey, e.key)
			rings[g][i] = m
		}
	}
	return rings
}

// publisherInstance runs a Watermill publisher (durablews or
// watermill-amqp) in the given shape against the env's exchange.
func publisherInstance(p message.Publisher, goroutines, batch int, e *env) *callInstance {
	return &callInstance{
		goroutines: goroutines, batch: batch,
		rings:  messageRings(goroutines, batch, e),
		call:   func(msgs []*message.Message) error { return p.Publish(e.exchange, msgs...) },
		closer: p.Close,
	}
}

// callInstance drives a Watermill message.Publisher from goroutines
// goroutines, batch messages per Publish call, back to back.
type callInstance struct {
	goroutines, batch int
	rings             [][]*message.Message
	call              func(msgs []*message.Message) error
	closer            func() error
}

func (c *callInstance) run(ctx context.Context, stop <-chan struct{}, confirmed *atomic.Int64) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for g := range c.goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ring := c.rings[g]
			for i := 0; ; i = (i + c.batch) % len(ring) {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				if err := c.call(ring[i : i+c.batch]); err != nil {
					cancel(fmt.Errorf("goroutine %d: %w", g, err))
					return
				}
				confirmed.Add(int64(c.batch))
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return ctx.Err()
}

func (c *callInstance) close() error { return c.closer() }

// --- raw amqp091-go ---

func rawPublishings(n int, e *env) []amqp.Publishing {
	pubs := make([]amqp.Publishing, n)
	now := time.Now()
	for i := range pubs {
		// The same properties durablews.DefaultMarshaler writes for the bench's
		// messages (the metadata becomes a header), so every contender
		// puts the same bytes on the wire.
		pubs[i] = amqp.Publishing{
			Headers:      amqp.Table{durablews.RoutingKeyMetadataKey: e.key},
			ContentType:  "application/json",
			DeliveryMode: amqp.Persistent,
			MessageId:    watermill.NewUUID(),
			Timestamp:    now,
			Body:         e.payload,
		}
	}
	return pubs
}

func dialConfirmChannel(url, name string) (*amqp.Connection, *amqp.Channel, error) {
	cfg := amqp.Config{Properties: amqp.NewConnectionProperties()}
	cfg.Properties.SetClientConnectionName(name)
	conn, err := amqp.DialConfig(url, cfg)
	if err != nil {
		return nil, nil, err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	return conn, ch, nil
}

// rawContender is amqp091-go on one confirm-mode channel with inFlight
// unconfirmed messages at most: 1 = publish and wait for each confirm,
// 256 = pipelined deferred confirms (the limit of one connection).
func rawContender(inFlight int) contender {
	c := contender{
		id:    fmt.Sprintf("raw-inflight%d", inFlight),
		name:  "raw amqp091-go, 1 channel",
		shape: "wait for each confirm",
	}
	if inFlight > 1 {
		c.shape = fmt.Sprintf("pipelined deferred confirms, %d in flight", inFlight)
	}
	c.start = func(ctx context.Context, e *env) (instance, error) {
		conn, ch, err := dialConfirmChannel(e.amqpURL, "durablews-bench-raw")
		if err != nil {
			return nil, err
		}
		r := &rawInstance{conn: conn, ch: ch, e: e, inFlight: inFlight, pubs: rawPublishings(1024, e)}
		if inFlight == 1 {
			r.batch = 1 // waiting for each confirm is a batch of one
		}
		return r, nil
	}
	return c
}

// rawBatchContender is amqp091-go publishing batch messages with
// deferred confirms, then waiting for all of them before the next batch:
// the batch shape without any library around it.
func rawBatchContender(batch int) contender {
	return contender{
		id:    fmt.Sprintf("raw-batch%d", batch),
		name:  "raw amqp091-go, 1 channel",
		shape: fmt.Sprintf("%d deferred confirms, wait all, repeat", batch),
		start: func(ctx context.Context, e *env) (instance, error) {
			conn, ch, err := dialConfirmChannel(e.amqpURL, "durablews-bench-raw")
			if err != nil {
				return nil, err
			}
			return &rawInstance{conn: conn, ch: ch, e: e, batch: batch, pubs: rawPublishings(batch*max(1, 1024/batch), e)}, nil
		},
	}
}

type rawInstance struct {
	conn     *amqp.Connection
	ch       *amqp.Channel
	e        *env
	batch    int // > 0: publish batch, wait for all, repeat (1: wait for each confirm)
	inFlight int
	pubs     []amqp.Publishing
}

func (r *rawInstance) run(ctx context.Context, stop <-chan struct{}, confirmed *atomic.Int64) error {
	if r.batch > 0 {
		dcs := make([]*amqp.DeferredConfirmation, r.batch)
		for i := 0; ; i = (i + r.batch) % len(r.pubs) {
			select {
			case <-stop:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			for k := range dcs {
				dc, err := r.ch.PublishWithDeferredConfirmWithContext(ctx, r.e.exchange, r.e.key, false, false, r.pubs[i+k])
				if err != nil {
					return err
				}
				dcs[k] = dc
			}
			for _, dc := range dcs {
				if ok, err := dc.WaitContext(ctx); err != nil || !ok {
					return fmt.Errorf("confirm: ack=%v err=%v", ok, err)
				}
			}
			confirmed.Add(int64(r.batch))
		}
	}
	slots := make(chan struct{}, r.inFlight)
	pending := make(chan *amqp.DeferredConfirmation, r.inFlight)
	failed := make(chan struct{})
	var collectErr error
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for dc := range pending {
			if collectErr == nil {
				ok, err := dc.WaitContext(ctx)
				switch {
				case err != nil:
					collectErr = err
				case !ok:
					collectErr = fmt.Errorf("nack (or channel closed) for delivery tag %d", dc.DeliveryTag)
				default:
					confirmed.Add(1)
				}
				if collectErr != nil {
					close(failed)
				}
			}
			<-slots
		}
	}()
	var err error
loop:
	for i := 0; ; i = (i + 1) % len(r.pubs) {
		select {
		case slots <- struct{}{}:
		case <-stop:
			break loop
		case <-failed:
			break loop
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		}
		dc, perr := r.ch.PublishWithDeferredConfirmWithContext(ctx, r.e.exchange, r.e.key, false, false, r.pubs[i])
		if perr != nil {
			<-slots
			err = perr
			break loop
		}
		pending <- dc // never blocks: slots bounds what is in pending
	}
	close(pending)
	<-collected
	if err == nil {
		err = collectErr
	}
	return err
}

func (r *rawInstance) close() error { return r.conn.Close() }
