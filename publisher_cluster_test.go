package durablews_test

// What the cluster preset turns on, shown on the shared single node: nack
// retries (a full reject-publish queue nacks until it has room again), the
// URL shuffle and Config.OnConnect. The cluster itself is in
// cluster_chaos_test.go.

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
)

// retryCounter is a RetryObserver counting retried sends by reason, and
// messages that ended unconfirmed.
type retryCounter struct {
	nacked, lost, failed atomic.Int64
}

func (r *retryCounter) Published(string, int)           {}
func (r *retryCounter) Confirmed(string, time.Duration) {}
func (r *retryCounter) NotConfirmed(string, error)      { r.failed.Add(1) }
func (r *retryCounter) Reconnected(string)              {}

func (r *retryCounter) Retried(_ string, n int, reason error) {
	if errors.Is(reason, durablews.ErrNacked) {
		r.nacked.Add(int64(n))
	} else {
		r.lost.Add(int64(n))
	}
}

func newRetryCounter() *retryCounter { return &retryCounter{} }

// fullQueueConfig binds a reject-publish queue of maxLen messages, which
// nacks what it has no room for, and returns a config with RetryNacks.
func fullQueueConfig(t *testing.T, maxLen int32, timeout time.Duration) (*broker, string, string, durablews.Config) {
	b := newBroker(t)
	ex := uniqueName(t, "renack")
	b.exchange(ex, "topic")
	q := b.queue(ex, "#", amqp.Table{"x-max-length": maxLen, "x-overflow": "reject-publish"})
	cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex})
	cfg.RetryNacks = true
	cfg.ConfirmTimeout = timeout
	return b, ex, q, cfg
}

func TestPublish_RetryNacksUntilTheQueueHasRoom(t *testing.T) {
	b, ex, q, cfg := fullQueueConfig(t, 2, 20*time.Second)
	rc := newRetryCounter()
	cfg.Observer = rc
	p := newPublisher(t, cfg)
	require.NoError(t, p.Publish(ex, newMsg("k"), newMsg("k")), "the queue takes two")

	msgs := []*message.Message{newMsg("k"), newMsg("k")}
	done := make(chan error, 1)
	go func() { done <- p.Publish(ex, msgs...) }()
	require.Eventually(t, func() bool { return rc.nacked.Load() >= 4 }, 10*time.Second, 10*time.Millisecond,
		"both messages are nacked and retried while the queue is full")
	select {
	case err := <-done:
		t.Fatalf("Publish returned while the queue was still full: %v", err)
	default:
	}
	purged, err := b.Ch.QueuePurge(q, false) // room again, at once: the next retries are taken
	require.NoError(t, err)
	require.Equal(t, 2, purged)
	require.NoError(t, <-done, "retried until confirmed")
	var ids []string
	for _, d := range b.drain(q) {
		ids = append(ids, d.MessageId)
	}
	assert.ElementsMatch(t, []string{msgs[0].UUID, msgs[1].UUID}, ids, "same message ids, each stored once")
	assert.Zero(t, rc.lost.Load())
}

func TestPublish_RetryNacksFailsWithErrNackedAtTheDeadline(t *testing.T) {
	b, ex, q, cfg := fullQueueConfig(t, 1, time.Second)
	rc := newRetryCounter()
	cfg.Observer = rc
	p := newPublisher(t, cfg)

	msgs := []*message.Message{newMsg("k"), newMsg("k"), newMsg("k")}
	start := time.Now()
	err := p.Publish(ex, msgs...)
	elapsed := time.Since(start)
	var pe *durablews.PublishError
	require.ErrorAs(t, err, &pe)
	assert.GreaterOrEqual(t, elapsed, cfg.ConfirmTimeout, "nacks are retried until ConfirmTimeout")
	assert.Equal(t, []string{msgs[0].UUID}, pe.Confirmed)
	assert.Equal(t, []string{msgs[1].UUID, msgs[2].UUID}, pe.NotConfirmed())
	for _, f := range pe.Failed {
		// In flight at the deadline, a retry ends as a timeout; between
		// retries as ErrNacked saying how often the broker refused it.
		if !errors.Is(f.Err, durablews.ErrConfirmTimeout) {
			assert.ErrorIs(t, f.Err, durablews.ErrNacked)
			assert.Contains(t, f.Err.Error(), "Config.ConfirmTimeout ran out before the broker took it")
		}
	}
	assert.Equal(t, 1, b.count(q))

	assert.Greater(t, rc.nacked.Load(), int64(2), "the Observer saw the retries")
	assert.Equal(t, int64(2), rc.failed.Load())
}

func TestPublish_ConnectionLossIsReportedAsRetried(t *testing.T) {
	b, ex, q, proxy := proxiedQueue(t, "relost", "#")
	proxy.SetLatency(50 * time.Millisecond) // confirms are still out when the cut comes

	cfg := durablews.NewConfig(proxied(t, proxy.Addr()), durablews.Exchange{Name: ex})
	cfg.Reconnect = durablews.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2}
	rc := newRetryCounter()
	cfg.Observer = rc
	p := newPublisher(t, cfg)
	require.NoError(t, p.Publish(ex, newMsg("k"))) // declared, channel open

	msgs := make([]*message.Message, 50)
	for i := range msgs {
		msgs[i] = newMsg("k")
	}
	done := make(chan error, 1)
	go func() { done <- p.Publish(ex, msgs...) }()
	time.Sleep(60 * time.Millisecond)
	proxy.CutAll()
	require.NoError(t, <-done)
	assert.Positive(t, rc.lost.Load(), "messages whose confirm was lost are republished and reported")
	assert.Zero(t, rc.nacked.Load())
	assert.GreaterOrEqual(t, b.count(q), 51)
}

func TestPublisher_ShufflesURLsUnlessKeepURLOrder(t *testing.T) {
	a, b := brokerProxy(t), brokerProxy(t)
	ex := uniqueName(t, "shuffle")
	newBroker(t).exchange(ex, "topic")
	const publishers = 16
	open := func(keep bool) (onA, onB int) {
		var pubs []*durablews.Publisher
		for range publishers {
			cfg := durablews.NewConfig("", durablews.Exchange{Name: ex, Passive: true})
			cfg.URLs = []string{proxied(t, a.Addr()), proxied(t, b.Addr())}
			cfg.KeepURLOrder = keep
			p, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
			require.NoError(t, err)
			pubs = append(pubs, p)
		}
		onA, onB = a.Stats().Active, b.Stats().Active
		t.Logf("KeepURLOrder %v: %d publishers on the first URL, %d on the second", keep, onA, onB)
		for _, p := range pubs {
			require.NoError(t, p.Close())
		}
		require.Eventually(t, func() bool { return a.Stats().Active+b.Stats().Active == 0 }, 10*time.Second, 10*time.Millisecond)
		return onA, onB
	}
	onA, onB := open(true)
	assert.Equal(t, publishers, onA)
	assert.Zero(t, onB)

	onA, onB = open(false)
	// Both URLs get some: all 16 on one would happen with probability 2^-15.
	assert.Positive(t, onA)
	assert.Positive(t, onB)
}

func TestPublisher_OnConnectRunsBeforeRepublishing(t *testing.T) {
	b, ex, q, proxy := proxiedQueue(t, "onconnect", "#")

	var calls atomic.Int64
	gate := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(open)
	cfg := durablews.NewConfig(proxied(t, proxy.Addr()), durablews.Exchange{Name: ex})
	cfg.Reconnect = durablews.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2}
	cfg.OnConnect = func(ctx context.Context, conn *amqp.Connection) error {
		if calls.Add(1) == 1 {
			return nil
		}
		// A reconnect: hold it, as broadcast.WaitReady would while a
		// stream recovers. The connection is usable here.
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		_ = ch.Close()
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p := newPublisher(t, cfg)
	require.Equal(t, int64(1), calls.Load(), "NewPublisher runs OnConnect on the first connection")
	require.NoError(t, p.Publish(ex, newMsg("k")))

	proxy.Stall(true) // the next publish goes out but its confirm does not come back
	done := make(chan error, 1)
	msg := newMsg("k")
	go func() { done <- p.Publish(ex, msg) }()
	time.Sleep(200 * time.Millisecond)
	proxy.CutAll()
	proxy.Stall(false)
	require.Eventually(t, func() bool { return calls.Load() >= 2 }, 10*time.Second, 10*time.Millisecond, "reconnected")
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Publish returned while OnConnect held the new connection: %v", err)
	default:
	}
	open()
	require.NoError(t, <-done)
	assert.GreaterOrEqual(t, b.count(q), 2)
}

func TestNewPublisher_OnConnectErrorFailsTheConnection(t *testing.T) {
	ex := uniqueName(t, "onconnect-err")
	cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex})
	cfg.OnConnect = func(context.Context, *amqp.Connection) error { return errors.New("stream orders not ready") }
	_, err := durablews.NewPublisher(cfg, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Config.OnConnect")
	assert.Contains(t, err.Error(), "stream orders not ready")

	cfg.OnConnect = func(context.Context, *amqp.Connection) error { panic("boom") }
	_, err = durablews.NewPublisher(cfg, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "panicked: boom")
}

func TestNewClusterConfig(t *testing.T) {
	urls := []string{"amqp://guest:guest@n1:5672/", "amqp://guest:guest@n2:5672/", "amqp://guest:guest@n3:5672/"}
	cfg := durablews.NewClusterConfig(urls, durablews.Exchange{Name: "events"})
	urls[0] = "changed"
	assert.Equal(t, "amqp://guest:guest@n1:5672/", cfg.URLs[0], "the preset keeps its own copy")
	assert.Len(t, cfg.URLs, 3)
	assert.True(t, cfg.RetryNacks)
	assert.True(t, cfg.Mandatory)
	assert.False(t, cfg.KeepURLOrder)
	assert.Equal(t, durablews.ClusterConfirmTimeout, cfg.ConfirmTimeout)
	assert.Equal(t, durablews.KindTopic, cfg.Exchanges["events"].Kind)
	assert.NoError(t, cfg.Validate())
}
