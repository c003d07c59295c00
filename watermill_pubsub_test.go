package durablews_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v2/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
)

// Watermill's own conformance suite, with the durablews Publisher on the
// publishing side and a watermill-amqp Subscriber built from
// Config.WatermillAMQPConfig on the consuming side, on the shared broker.
//
// The subscriber of the plain constructor keeps watermill-amqp's
// DefaultMarshaler (it finds the UUID only in _watermill_message_uuid), so
// the suite's UUID and metadata checks prove that interop; the consumer
// group constructor keeps the preset's durablews Marshaler, so that side
// is exercised too.
//
// Features, honestly: consumer groups are queues per group; RabbitMQ
// delivers at least once; a queue keeps the order of one goroutine's
// sequential Publish calls (the README's Guarantees list when it does not:
// concurrent publishers, a republish after a lost connection, none of
// which the ordering tests do); messages are durable. The suite skips
// TestReconnect, which restarts the broker (the shared one must not be):
// TestWatermillAMQPSubscriberAcrossRestarts does the same on a private
// node. It also skips TestNewSubscriberReceivesOldMessages (a RabbitMQ
// queue does not replay consumed messages).
func TestWatermillPubSubSuite(t *testing.T) {
	start := time.Now()
	env := &suiteEnv{t: t, b: newBroker(t), prefix: "durablews-suite-" + watermill.NewShortUUID()}
	t.Cleanup(env.cleanup)
	t.Cleanup(func() {
		// Every publish the suite made went through durablews; publishWithRetry
		// in the suite would hide a failed one, so count them here.
		assert.Zero(t, env.failed.Load(), "durablews Publish calls that failed (the suite retried them)")
		t.Logf("suite: %d Publish calls, %d failed, %d exchanges, %d queues, in %v",
			env.calls.Load(), env.failed.Load(), len(env.exchanges), len(env.queues), time.Since(start).Round(time.Millisecond))
	})

	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 false,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		GenerateTopicFunc: func(tctx tests.TestContext) string {
			return env.prefix + "-" + string(tctx.TestID)
		},
	},
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			return env.pubSub(t, "test", wamqp.DefaultMarshaler{})
		},
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
			return env.pubSub(t, group, nil)
		},
	)
}

type suiteEnv struct {
	t      *testing.T
	b      *broker
	url    string // the broker; empty means the shared one
	prefix string

	mu        sync.Mutex
	exchanges map[string]bool
	queues    map[string]bool

	calls, failed atomic.Int64
}

// pubSub builds a durablews Publisher and a watermill-amqp Subscriber for
// the suite's generated topics (fanout exchanges named after the topic,
// mapped by Config.ExchangeFor). marshaler replaces the preset's when set.
func (e *suiteEnv) pubSub(t *testing.T, group string, marshaler wamqp.Marshaler) (message.Publisher, message.Subscriber) {
	url := e.url
	if url == "" {
		url = amqpURL()
	}
	cfg := durablews.NewConfig(url)
	cfg.ExchangeFor = func(topic string) (durablews.Exchange, bool) {
		if !strings.HasPrefix(topic, e.prefix) {
			return durablews.Exchange{}, false
		}
		e.remember(&e.exchanges, topic)
		return durablews.Exchange{Name: topic, Kind: durablews.KindFanout}, true
	}
	pub, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	require.NoError(t, err)

	queueName := wamqp.GenerateQueueNameTopicNameWithSuffix(group)
	wcfg := cfg.WatermillAMQPConfig(func(topic string) string {
		q := queueName(topic)
		e.remember(&e.queues, q)
		return q
	}, nil)
	if marshaler != nil {
		wcfg.Marshaler = marshaler
	}
	sub, err := wamqp.NewSubscriber(wcfg, watermill.NopLogger{})
	require.NoError(t, err)
	// Some suite tests leave their subscribers open; both Close methods are
	// idempotent, so closing again here only keeps goleak quiet.
	t.Cleanup(func() {
		assert.NoError(t, sub.Close())
		assert.NoError(t, pub.Close())
	})
	return countingPublisher{pub, e}, sub
}

func (e *suiteEnv) remember(set *map[string]bool, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if *set == nil {
		*set = map[string]bool{}
	}
	(*set)[name] = true
}

// cleanup deletes what the suite declared on the shared broker.
func (e *suiteEnv) cleanup() {
	ch, err := e.b.Conn.Channel()
	if err != nil {
		e.t.Errorf("cleanup: %v", err)
		return
	}
	defer ch.Close()
	e.mu.Lock()
	defer e.mu.Unlock()
	for q := range e.queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			e.t.Errorf("cleanup: delete queue %s: %v", q, err)
			return
		}
	}
	for ex := range e.exchanges {
		if err := ch.ExchangeDelete(ex, false, false); err != nil {
			e.t.Errorf("cleanup: delete exchange %s: %v", ex, err)
			return
		}
	}
}

// countingPublisher counts the durablews Publish calls that failed.
type countingPublisher struct {
	*durablews.Publisher
	e *suiteEnv
}

func (p countingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.e.calls.Add(1)
	err := p.Publisher.Publish(topic, msgs...)
	if err != nil {
		p.e.failed.Add(1)
		p.e.t.Logf("durablews Publish to %s failed: %v", topic, err)
	}
	return err
}
