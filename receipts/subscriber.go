package receipts

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/durablews/durablews/internal/amqpconn"
)

// Subscriber reads receipt batches from the service's durable receipts
// queue and hands out one watermill message per receipt. It implements
// message.Subscriber (and message.SubscribeInitializer), so a Router
// handler or a Tracker can consume it.
//
// It holds one AMQP connection (named "durablews receipts <Queue>") with a
// channel per subscription, and reconnects by itself. The topic given to
// Subscribe is a binding key of Config.Queue on the receipts exchange ("#"
// for every receipt). Each batch delivery becomes one message per
// receipt: UUID "<message id>/<tab id>" (Receipt.MessageUUID), payload the
// Receipt as JSON (FromMessage), metadata the Metadata* keys. The delivery
// is acked once every receipt message of it was acked, and nacked
// (requeued: every receipt of it comes again) as soon as one is nacked. A
// batch that does not decode is refused: logged, counted (Stats.Refused),
// passed to Config.OnRefused and acked.
//
// All receipt messages of a batch are handed out before the Subscriber
// waits for their acks, so a consumer may handle them concurrently; the
// next batch of a subscription comes once the previous one is settled.
//
// When the connection or a subscription's channel is lost, the
// subscription stops waiting for the acks of its batch (the broker puts
// the batch back, and delivers it again: a Tracker drops the receipts it
// already has) and consumes again once the Subscriber has reconnected;
// see the package documentation.
type Subscriber struct {
	cfg      Config
	logger   watermill.LoggerAdapter
	consumer *consumer

	batches, receipts, refused atomic.Uint64

	mu      sync.Mutex // orders Subscribe's subs.Add before Close's subs.Wait
	closed  bool
	closing chan struct{}
	once    sync.Once
	subs    sync.WaitGroup // subscription goroutines
}

var (
	_ message.Subscriber           = (*Subscriber)(nil)
	_ message.SubscribeInitializer = (*Subscriber)(nil)
)

// NewSubscriber connects to config.URL and returns a Subscriber. It fails
// fast when the config is invalid or the broker does not answer (within
// 30 s, or the URL's connection_timeout). A nil logger logs nothing.
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
	c, err := dialConsumer(config.URL, amqpCfg, logger)
	if err != nil {
		return nil, fmt.Errorf("receipts: connect to %s: %w", amqpconn.RedactURL(config.URL), err)
	}
	return &Subscriber{cfg: config, logger: logger, consumer: c, closing: make(chan struct{})}, nil
}

// Subscribe declares the receipts exchange and Config.Queue, binds the
// queue with bindingKey (e.g. "#", or "<userKey>.*" for one user's tabs)
// and returns the channel of receipt messages. It fails while the
// Subscriber is reconnecting. The channel is closed when ctx ends or the
// Subscriber is closed; a receipt message not yet acked then is nacked,
// so its batch comes again.
func (s *Subscriber) Subscribe(ctx context.Context, bindingKey string) (<-chan *message.Message, error) {
	if err := s.checkTopic(bindingKey); err != nil {
		return nil, err
	}
	fail := func(err error) error {
		if s.isClosing() {
			return ErrSubscriberClosed
		}
		return fmt.Errorf("receipts: subscribe to queue %q with binding key %q: %w", s.cfg.Queue, bindingKey, err)
	}
	conn, err := s.consumer.current()
	if err != nil {
		return nil, fail(err)
	}
	tag := "durablews-receipts-" + watermill.NewShortUUID()
	ch, err := openConsumeChannel(conn, s.cfg, bindingKey, tag)
	if err != nil {
		return nil, fail(err)
	}
	sub := &subscription{
		s: s, ctx: ctx, bindingKey: bindingKey, tag: tag, out: make(chan *message.Message),
		logger: s.logger.With(watermill.LogFields{"binding_key": bindingKey, "consumer_tag": tag}),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ch.close()
		return nil, ErrSubscriberClosed
	}
	s.subs.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.subs.Done()
		sub.run(ch)
	}()
	return sub.out, nil
}

// SubscribeInitialize declares the exchange and the queue and binds the
// queue with bindingKey, without consuming.
func (s *Subscriber) SubscribeInitialize(bindingKey string) error {
	if err := s.checkTopic(bindingKey); err != nil {
		return err
	}
	err := func() error {
		conn, err := s.consumer.current()
		if err != nil {
			return err
		}
		return DeclareQueue(conn, s.cfg.queue(bindingKey))
	}()
	if err != nil && s.isClosing() {
		return ErrSubscriberClosed
	}
	if err != nil {
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
// is delivered again), closes their channels and the connection, and stops
// reconnecting. It returns within a few seconds also while the broker is
// unreachable or does not answer. It is idempotent.
func (s *Subscriber) Close() error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.closing)
		s.mu.Unlock()
		// The subscriptions settle their batches and end at once, unless
		// one waits for the broker's answer on a connection that stopped
		// answering: closing the connection ends that wait.
		waitAtMost(&s.subs, closeTimeout)
		if e := s.consumer.close(); e != nil {
			err = fmt.Errorf("receipts: %w", e)
		}
		s.subs.Wait()
	})
	return err
}

// waitAtMost waits for wg, or d.
func waitAtMost(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

func (s *Subscriber) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}
