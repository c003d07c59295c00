package receipts

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

	"github.com/durablews/durablews/internal/amqpconn"
)

// Subscriber reads receipt batches from the service's durable receipts
// queue and hands out one watermill message per receipt. It implements
// message.Subscriber (and message.SubscribeInitializer), so a Router
// handler or a Tracker can consume it.
//
// It wraps watermill-amqp's subscriber (reconnects included). The topic
// given to Subscribe is a binding key of Config.Queue on the receipts
// exchange ("#" for every receipt). Each batch delivery becomes one
// message per receipt: UUID "<message id>/<tab id>" (Receipt.MessageUUID),
// payload the Receipt as JSON (FromMessage), metadata the Metadata* keys.
// The delivery is acked once every receipt message of it was acked, and
// nacked (requeued: every receipt of it comes again) as soon as one is
// nacked. A batch that does not decode is refused: logged, counted
// (Stats.Refused), passed to Config.OnRefused and acked.
//
// All receipt messages of a batch are handed out before the Subscriber
// waits for their acks, so a consumer may handle them concurrently; the
// next batch of a subscription comes once the previous one is settled.
type Subscriber struct {
	cfg    Config
	logger watermill.LoggerAdapter
	inner  *wamqp.Subscriber

	batches, receipts, refused atomic.Uint64

	closing chan struct{}
	once    sync.Once
	subs    sync.WaitGroup // subscription goroutines
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// NewSubscriber connects to config.URL and returns a Subscriber. It fails
// fast when the config is invalid or the broker does not answer. A nil
// logger logs nothing.
func NewSubscriber(config Config, logger watermill.LoggerAdapter) (*Subscriber, error) {
	config = config.clone()
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	logger = logger.With(watermill.LogFields{"component": "receipts.Subscriber", "queue": config.Queue})
	amqpCfg := amqpconn.WithConnectionName(config.AMQP, "durablews receipts "+config.Queue)
	inner, err := wamqp.NewSubscriber(wamqp.Config{
		Connection: wamqp.ConnectionConfig{
			AmqpURI:    config.URL,
			AmqpConfig: &amqpCfg,
			Reconnect: &wamqp.ReconnectConfig{
				BackoffInitialInterval:     100 * time.Millisecond,
				BackoffRandomizationFactor: 0.5,
				BackoffMultiplier:          2,
				BackoffMaxInterval:         5 * time.Second,
			},
		},
		Marshaler: batchUnmarshaler{},
		Exchange: wamqp.ExchangeConfig{
			// The topic itself: topologyBuilder binds with it.
			GenerateName: func(topic string) string { return topic },
			Type:         "topic",
			Durable:      true,
		},
		Queue: wamqp.QueueConfig{
			GenerateName: func(string) string { return config.Queue },
			Durable:      true,
		},
		Consume: wamqp.ConsumeConfig{
			Qos: wamqp.QosConfig{PrefetchCount: config.PrefetchCount},
		},
		TopologyBuilder: topologyBuilder{cfg: config},
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("receipts: connect to %s: %w", amqpconn.RedactURL(config.URL), err)
	}
	return &Subscriber{cfg: config, logger: logger, inner: inner, closing: make(chan struct{})}, nil
}

// Subscribe declares the receipts exchange and Config.Queue, binds the
// queue with bindingKey (e.g. "#", or "<userKey>.*" for one user's tabs)
// and returns the channel of receipt messages. The channel is closed when
// ctx ends or the Subscriber is closed; a receipt message not yet acked
// then is nacked, so its batch comes again.
func (s *Subscriber) Subscribe(ctx context.Context, bindingKey string) (<-chan *message.Message, error) {
	if err := s.checkTopic(bindingKey); err != nil {
		return nil, err
	}
	batches, err := s.inner.Subscribe(ctx, bindingKey)
	if err != nil {
		return nil, fmt.Errorf("receipts: subscribe to queue %q with binding key %q: %w", s.cfg.Queue, bindingKey, err)
	}
	out := make(chan *message.Message)
	s.subs.Add(1)
	go func() {
		defer s.subs.Done()
		defer close(out)
		for b := range batches {
			s.handleBatch(ctx, b, out)
		}
	}()
	return out, nil
}

// SubscribeInitialize declares the exchange and the queue and binds the
// queue with bindingKey, without consuming.
func (s *Subscriber) SubscribeInitialize(bindingKey string) error {
	if err := s.checkTopic(bindingKey); err != nil {
		return err
	}
	if err := s.inner.SubscribeInitialize(bindingKey); err != nil {
		return fmt.Errorf("receipts: initialize queue %q with binding key %q: %w", s.cfg.Queue, bindingKey, err)
	}
	return nil
}

func (s *Subscriber) checkTopic(bindingKey string) error {
	select {
	case <-s.closing:
		return ErrSubscriberClosed
	default:
	}
	if bindingKey == "" || len(bindingKey) > maxField {
		return fmt.Errorf("receipts: binding key %.80q must be 1 to %d bytes (\"#\" for every receipt)", bindingKey, maxField)
	}
	return nil
}

// Stats returns what the Subscriber read so far.
func (s *Subscriber) Stats() Stats {
	return Stats{Batches: s.batches.Load(), Receipts: s.receipts.Load(), Refused: s.refused.Load()}
}

// Close ends every subscription (a batch not yet settled is nacked, so it
// is delivered again), closes their channels and the connection. It is
// idempotent.
func (s *Subscriber) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closing)
		err = s.inner.Close()
		s.subs.Wait()
	})
	return err
}

// handleBatch splits batch b into receipt messages, sends them to out and
// settles b by their outcome.
func (s *Subscriber) handleBatch(ctx context.Context, b *message.Message, out chan<- *message.Message) {
	s.batches.Add(1)
	if ctx.Err() != nil || s.isClosing() {
		b.Nack() // the subscription is ending: the batch stays in the queue
		return
	}
	key := b.Metadata.Get(batchRoutingKey)
	rs, err := DecodeBatch(key, b.Payload, s.cfg.Now())
	if err != nil {
		s.refuse(b, key, err)
		return
	}
	s.receipts.Add(uint64(len(rs)))
	msgs := make([]*message.Message, 0, len(rs))
	for _, r := range rs {
		m := r.toMessage()
		m.SetContext(ctx)
		select {
		case out <- m:
			msgs = append(msgs, m)
		case <-ctx.Done():
			b.Nack()
			return
		case <-s.closing:
			b.Nack()
			return
		}
	}
	for i, m := range msgs {
		select {
		case <-m.Acked():
		case <-m.Nacked():
			s.logger.Debug("Receipt nacked; the batch is requeued", watermill.LogFields{"receipt": m.UUID, "batch": b.UUID})
			b.Nack()
			return
		case <-ctx.Done():
			settle(b, msgs[i:])
			return
		case <-s.closing:
			settle(b, msgs[i:])
			return
		}
	}
	b.Ack()
}

// settle acks batch b if every message of rest is acked already, else
// nacks it: the subscription is ending and will not wait.
func settle(b *message.Message, rest []*message.Message) {
	for _, m := range rest {
		select {
		case <-m.Acked():
		default:
			b.Nack()
			return
		}
	}
	b.Ack()
}

func (s *Subscriber) refuse(b *message.Message, key string, err error) {
	s.refused.Add(1)
	reason := "malformed"
	if errors.Is(err, ErrTabMismatch) {
		reason = "tab mismatch"
	}
	s.logger.Error("Receipt batch refused and dropped", err, watermill.LogFields{
		"routing_key": key, "batch": b.UUID, "reason": reason, "redelivered": b.Metadata.Get(batchRedelivered),
	})
	if s.cfg.OnRefused != nil {
		func() {
			defer func() {
				if p := recover(); p != nil {
					s.logger.Error("Config.OnRefused panicked", fmt.Errorf("panic: %v", p), watermill.LogFields{"routing_key": key})
				}
			}()
			s.cfg.OnRefused(key, err)
		}()
	}
	b.Ack()
}

func (s *Subscriber) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}
