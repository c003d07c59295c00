package durablews_test

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/durablews/durablews"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestPublish_RoutesByMetadataIntoDurableQueues(t *testing.T) {
	b := newBroker(t)
	topicEx := uniqueName(t, "topic")
	directEx := uniqueName(t, "direct")
	fanoutEx := uniqueName(t, "fanout")
	cfg := durablews.NewConfig(amqpURL(),
		durablews.Exchange{Name: topicEx}, // kind defaults to topic
		durablews.Exchange{Name: directEx, Kind: durablews.KindDirect},
		durablews.Exchange{Name: fanoutEx, Kind: durablews.KindFanout},
	)
	p := newPublisher(t, cfg)
	t.Cleanup(func() {
		b.deleteExchange(topicEx)
		b.deleteExchange(directEx)
		b.deleteExchange(fanoutEx)
	})

	// The publisher declares the exchanges on first use; bind after that.
	require.NoError(t, p.Publish(topicEx, newMsg("warmup")))
	require.NoError(t, p.Publish(directEx, newMsg("warmup")))
	require.NoError(t, p.Publish(fanoutEx, newMsg("")))

	cust42 := b.queue(topicEx, "customer.42.#", nil)
	cust43 := b.queue(topicEx, "customer.43.#", nil)
	direct := b.queue(directEx, "alerts", nil)
	fanA := b.queue(fanoutEx, "", nil)
	fanB := b.queue(fanoutEx, "ignored", nil)

	m1 := newMsg("customer.42.order_created")
	m1.Metadata.Set("correlation_id", "corr-1")
	m1.Metadata.Set("tenant", "acme")
	m2 := newMsg("customer.43.order_created")
	require.NoError(t, p.Publish(topicEx, m1, m2))
	m3 := newMsg("alerts")
	m4 := newMsg("other")
	require.NoError(t, p.Publish(directEx, m3, m4))
	m5 := newMsg("") // fanout ignores keys
	m5.Metadata.Set(durablews.ContentTypeMetadataKey, "text/plain")
	require.NoError(t, p.Publish(fanoutEx, m5))

	got := b.drain(cust42)
	require.Len(t, got, 1)
	d := got[0]
	assert.Equal(t, m1.UUID, d.MessageId)
	assert.Equal(t, uint8(amqp.Persistent), d.DeliveryMode)
	assert.Equal(t, "application/json", d.ContentType)
	assert.Equal(t, "corr-1", d.CorrelationId)
	assert.Equal(t, "acme", d.Headers["tenant"])
	assert.Equal(t, "customer.42.order_created", d.Headers[durablews.RoutingKeyMetadataKey])
	assert.Equal(t, "customer.42.order_created", d.RoutingKey)
	assert.WithinDuration(t, time.Now(), d.Timestamp, time.Minute)
	assert.Equal(t, m1.Payload, message.Payload(d.Body))

	got = b.drain(cust43)
	require.Len(t, got, 1)
	assert.Equal(t, m2.UUID, got[0].MessageId)

	got = b.drain(direct)
	require.Len(t, got, 1, "direct exchange routes by exact key only")
	assert.Equal(t, m3.UUID, got[0].MessageId)

	for _, q := range []string{fanA, fanB} {
		got = b.drain(q)
		require.Len(t, got, 1, "fanout delivers to every bound queue")
		assert.Equal(t, m5.UUID, got[0].MessageId)
		assert.Equal(t, "text/plain", got[0].ContentType)
		assert.Equal(t, uint8(amqp.Persistent), got[0].DeliveryMode)
	}
}

func TestPublish_NackNamesExactlyTheNackedMessages(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "nack")
	b.exchange(ex, "topic")
	// A full reject-publish queue makes the broker nack further messages.
	q := b.queue(ex, "#", amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"})
	p := newPublisher(t, durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex}))

	msgs := []*message.Message{newMsg("k"), newMsg("k"), newMsg("k")}
	err := p.Publish(ex, msgs...)
	require.Error(t, err)
	var pe *durablews.PublishError
	require.ErrorAs(t, err, &pe)
	assert.ErrorIs(t, err, durablews.ErrNacked)
	assert.Equal(t, []string{msgs[0].UUID}, pe.Confirmed)
	assert.Equal(t, []string{msgs[1].UUID, msgs[2].UUID}, pe.NotConfirmed())
	for _, f := range pe.Failed {
		assert.ErrorIs(t, f.Err, durablews.ErrNacked)
		assert.Contains(t, err.Error(), f.UUID)
	}
	assert.Equal(t, 1, b.count(q))
}

func TestPublish_Mandatory(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "mand")
	b.exchange(ex, "topic")
	bound := b.queue(ex, "bound.#", nil)

	t.Run("unroutable is an error with Mandatory", func(t *testing.T) {
		cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex})
		cfg.Mandatory = true
		p := newPublisher(t, cfg)
		routed, lost := newMsg("bound.1"), newMsg("nobody.listens")
		err := p.Publish(ex, routed, lost)
		require.ErrorIs(t, err, durablews.ErrUnroutable)
		var pe *durablews.PublishError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, []string{routed.UUID}, pe.Confirmed)
		assert.Equal(t, []string{lost.UUID}, pe.NotConfirmed())
		assert.Contains(t, err.Error(), "NO_ROUTE")
		assert.Equal(t, 1, b.count(bound))
		b.drain(bound)

		// Many in flight: returns must be matched to the right messages.
		var batch []*message.Message
		var want []string
		for i := range 200 {
			if i%3 == 0 {
				batch = append(batch, newMsg("nobody"))
				want = append(want, batch[i].UUID)
			} else {
				batch = append(batch, newMsg("bound.x"))
			}
		}
		err = p.Publish(ex, batch...)
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, want, pe.NotConfirmed())
		assert.Len(t, pe.Confirmed, 200-len(want))
		assert.Equal(t, 200-len(want), b.count(bound))
	})

	t.Run("unroutable is confirmed and dropped without Mandatory", func(t *testing.T) {
		p := newPublisher(t, durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex}))
		require.NoError(t, p.Publish(ex, newMsg("nobody.listens")))
	})
}

func TestPublish_BadInputIsReportedPerMessage(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "bad")
	b.exchange(ex, "topic")
	q := b.queue(ex, "#", nil)
	missing := uniqueName(t, "missing")
	cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex}, durablews.Exchange{Name: missing, Passive: true})
	p := newPublisher(t, cfg)

	t.Run("empty topic", func(t *testing.T) {
		err := p.Publish("", newMsg("k"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "empty topic")
		assert.Contains(t, err.Error(), ex, "names the configured topics")
	})
	t.Run("unknown topic", func(t *testing.T) {
		err := p.Publish("nope", newMsg("k"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), `unknown topic "nope"`)
		assert.Contains(t, err.Error(), ex)
	})
	t.Run("nil message spoils the batch, others not sent", func(t *testing.T) {
		good := newMsg("k")
		err := p.Publish(ex, good, nil)
		var pe *durablews.PublishError
		require.ErrorAs(t, err, &pe)
		require.Len(t, pe.Failed, 2)
		assert.ErrorIs(t, pe.Failed[0].Err, durablews.ErrNotSent)
		assert.Equal(t, good.UUID, pe.Failed[0].UUID)
		assert.ErrorIs(t, pe.Failed[1].Err, durablews.ErrInvalidMessage)
		assert.Contains(t, pe.Failed[1].Err.Error(), "nil")
		assert.Empty(t, pe.Confirmed)
		assert.Equal(t, 0, b.count(q), "nothing of an invalid batch is published")
	})
	t.Run("missing routing key", func(t *testing.T) {
		m := newMsg("")
		err := p.Publish(ex, m)
		require.ErrorIs(t, err, durablews.ErrInvalidMessage)
		assert.Contains(t, err.Error(), "no routing key")
		assert.Contains(t, err.Error(), m.UUID)
	})
	t.Run("messages a browser could not receive", func(t *testing.T) {
		long := newMsg(strings.Repeat("k", 256))
		binary := newMsg("k")
		binary.Payload = []byte{0xff, 0xfe, 0x00}
		huge := newMsg("k")
		huge.Payload = make([]byte, durablews.DefaultMaxPayloadBytes+1)
		reserved := newMsg("k")
		reserved.Metadata.Set("content-type", "text/html")
		fine := newMsg("k")
		err := p.Publish(ex, long, binary, huge, reserved, fine)
		var pe *durablews.PublishError
		require.ErrorAs(t, err, &pe)
		require.Len(t, pe.Failed, 5)
		for i, want := range []string{"over the AMQP limit of 255", "not valid UTF-8", "over Config.MaxPayloadBytes", "collides with a STOMP header", "another message of this batch is invalid"} {
			assert.Contains(t, pe.Failed[i].Err.Error(), want)
		}
		assert.ErrorIs(t, pe.Failed[0].Err, durablews.ErrRoutingKey)
		assert.ErrorIs(t, pe.Failed[4].Err, durablews.ErrNotSent)
		assert.Equal(t, 0, b.count(q))
	})
	t.Run("missing passive exchange", func(t *testing.T) {
		err := p.Publish(missing, newMsg("k"))
		require.ErrorIs(t, err, durablews.ErrNotSent)
		assert.Contains(t, err.Error(), "does not exist and Passive is set")
		// The publisher stays usable for other topics.
		require.NoError(t, p.Publish(ex, newMsg("k")))
		assert.Equal(t, 1, b.count(q))
	})
	t.Run("cancelled context", func(t *testing.T) {
		b.drain(q)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		live, dead := newMsg("k"), newMsg("k")
		dead.SetContext(ctx)
		err := p.Publish(ex, live, dead)
		var pe *durablews.PublishError
		require.ErrorAs(t, err, &pe)
		assert.Equal(t, []string{live.UUID}, pe.Confirmed)
		assert.Equal(t, []string{dead.UUID}, pe.NotConfirmed())
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 1, b.count(q))
	})
}

func TestPublish_AfterCloseAndIdempotentClose(t *testing.T) {
	ex := uniqueName(t, "close")
	b := newBroker(t)
	b.exchange(ex, "topic")
	p, err := durablews.NewPublisher(durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex}), nil)
	require.NoError(t, err)
	require.NoError(t, p.Publish(ex, newMsg("k")))
	require.NoError(t, p.Close())
	require.NoError(t, p.Close())
	require.ErrorIs(t, p.Publish(ex, newMsg("k")), durablews.ErrPublisherClosed)
}

func redacted(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u.Redacted()
}

// Connection events go to the logger at info, each confirmed Publish call at trace.
func TestPublish_LogsConnectionAtInfoAndConfirmsAtTrace(t *testing.T) {
	ex := uniqueName(t, "log")
	b := newBroker(t)
	b.exchange(ex, "topic")
	logger := watermill.NewCaptureLogger()
	p, err := durablews.NewPublisher(durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex}), logger)
	require.NoError(t, err)
	require.NoError(t, p.Publish(ex, newMsg("k"), newMsg("k")))
	require.NoError(t, p.Close())
	assert.True(t, logger.Has(watermill.CapturedMessage{Level: watermill.InfoLogLevel, Msg: "Connected to broker",
		Fields: watermill.LogFields{"component": "durablews.Publisher", "url": redacted(t, amqpURL())}}),
		"%v", logger.Captured())
	assert.True(t, logger.Has(watermill.CapturedMessage{Level: watermill.TraceLogLevel, Msg: "Published and confirmed",
		Fields: watermill.LogFields{"component": "durablews.Publisher", "topic": ex, "messages": 2}}),
		"%v", logger.Captured())
}

func TestPublish_CloseWaitsForInFlightConfirms(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "closewait")
	b.exchange(ex, "topic")
	q := b.queue(ex, "#", nil)
	p, err := durablews.NewPublisher(durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex}), nil)
	require.NoError(t, err)

	const n = 2000
	batch := make([]*message.Message, n)
	for i := range batch {
		batch[i] = newMsg("k")
	}
	done := make(chan error, 1)
	go func() { done <- p.Publish(ex, batch...) }()
	// Close once the batch is under way (some messages reached the queue).
	require.Eventually(t, func() bool { return b.count(q) > 0 }, 10*time.Second, time.Millisecond)
	require.NoError(t, p.Close())
	require.NoError(t, <-done, "Close must let a running Publish finish")
	assert.Equal(t, n, b.count(q))
}

func TestPublish_ConcurrentPublishers(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "conc")
	b.exchange(ex, "topic")
	q := b.queue(ex, "#", nil)
	cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex})
	cfg.Channels = 2
	p := newPublisher(t, cfg)

	const goroutines, perG = 16, 100
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	ids := make(chan string, 2*goroutines*perG)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perG {
				m := newMsg(fmt.Sprintf("g%d.m%d", g, i))
				if i%10 == 0 { // mix single messages and small batches
					m2 := newMsg("batch")
					if err := p.Publish(ex, m, m2); err != nil {
						errs <- err
						return
					}
					ids <- m.UUID
					ids <- m2.UUID
					continue
				}
				if err := p.Publish(ex, m); err != nil {
					errs <- err
					return
				}
				ids <- m.UUID
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(ids)
	for err := range errs {
		require.NoError(t, err)
	}
	want := map[string]bool{}
	for id := range ids {
		want[id] = true
	}
	got := b.drain(q)
	assert.Len(t, got, len(want))
	for _, d := range got {
		assert.True(t, want[d.MessageId], "unexpected message %s", d.MessageId)
		delete(want, d.MessageId)
	}
	assert.Empty(t, want, "confirmed but missing from the queue")
}

func TestPublish_RepublishesAfterConnectionCut(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "cut")
	b.exchange(ex, "topic")
	q := b.queue(ex, "#", nil)
	dialer := &cuttableDialer{}
	cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex})
	cfg.AMQP.Dial = dialer.Dial
	cfg.Reconnect = durablews.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2}
	p := newPublisher(t, cfg)

	// Cut the TCP connection repeatedly while 20 goroutines publish.
	stop := make(chan struct{})
	var cutter sync.WaitGroup
	cutter.Add(1)
	go func() {
		defer cutter.Done()
		for range 5 {
			select {
			case <-stop:
				return
			case <-time.After(150 * time.Millisecond):
				dialer.cutAll()
			}
		}
	}()
	var mu sync.Mutex
	confirmed := map[string]bool{}
	var failed int
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				batch := []*message.Message{newMsg("k"), newMsg("k"), newMsg("k")}
				ok, bad := outcome(t, batch, p.Publish(ex, batch...))
				mu.Lock()
				failed += len(bad)
				for _, id := range ok {
					confirmed[id] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	cutter.Wait()
	require.Greater(t, dialer.dialCount(), 1, "the connection was cut and re-dialled")

	inQueue := map[string]int{}
	for _, d := range b.drain(q) {
		inQueue[d.MessageId]++
	}
	var lost []string
	dups := 0
	for id := range confirmed {
		if inQueue[id] == 0 {
			lost = append(lost, id)
		}
		if inQueue[id] > 1 {
			dups += inQueue[id] - 1
		}
	}
	sort.Strings(lost)
	t.Logf("confirmed %d, failed %d, duplicates %d, dials %d", len(confirmed), failed, dups, dialer.dialCount())
	assert.Empty(t, lost, "confirmed messages missing from the queue")
	assert.Equal(t, 3000, len(confirmed)+failed)
}

func TestNewPublisher_FailsFastWhenNoBrokerAnswers(t *testing.T) {
	cfg := durablews.NewConfig("amqp://guest:secret@127.0.0.1:1/", durablews.Exchange{Name: "events"})
	cfg.URLs = append(cfg.URLs, "amqp://guest:guest@127.0.0.1:2/")
	start := time.Now()
	_, err := durablews.NewPublisher(cfg, nil)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 10*time.Second)
	assert.Contains(t, err.Error(), "cannot connect to any broker")
	assert.Contains(t, err.Error(), "127.0.0.1:1")
	assert.Contains(t, err.Error(), "127.0.0.1:2")
	assert.NotContains(t, err.Error(), "secret", "passwords are redacted")
	assert.NotContains(t, err.Error(), "make ", "no advice that only makes sense in this repository")
}

func TestNewPublisher_MovesToNextURL(t *testing.T) {
	ex := uniqueName(t, "urls")
	b := newBroker(t)
	b.exchange(ex, "topic")
	cfg := durablews.NewConfig("amqp://guest:guest@127.0.0.1:1/", durablews.Exchange{Name: ex})
	cfg.URLs = append(cfg.URLs, amqpURL())
	p := newPublisher(t, cfg)
	require.NoError(t, p.Publish(ex, newMsg("k")))
}

func TestConfig_ValidateNamesTheBadField(t *testing.T) {
	cfg := durablews.Config{
		URLs:      []string{"http://x", "amqp://guest:pw@h/"},
		Exchanges: map[string]durablews.Exchange{"a": {Name: "", Kind: "topic"}, "b": {Name: "b", Kind: "weird"}, "c": {Name: "amq.topic"}},
	}
	_, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{`URLs[0]`, `scheme must be amqp`, `Exchanges["a"].Name is empty`, `Exchanges["b"].Kind "weird"`, `reserved amq. prefix`} {
		assert.Contains(t, msg, want)
	}
	assert.Equal(t, 4, strings.Count(msg, "invalid config"), msg)

	_, err = durablews.NewPublisher(durablews.Config{}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "URLs is empty")
	assert.Contains(t, err.Error(), "Exchanges is empty")
}
