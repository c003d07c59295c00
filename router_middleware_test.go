package durablews_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v2/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/receipts"
)

// runRouter starts r and stops it when the test ends.
func runRouter(t *testing.T, r *message.Router) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		assert.NoError(t, r.Run(context.Background()))
	}()
	select {
	case <-r.Running():
	case <-time.After(10 * time.Second):
		t.Fatal("router did not start")
	}
	t.Cleanup(func() {
		require.NoError(t, r.Close())
		<-done
	})
}

// waitForIDs reads q until it has seen every id in want (duplicates are
// counted, not failures) or the timeout passes; it returns what it saw.
func waitForIDs(t *testing.T, b *broker, q string, want map[string]bool, timeout time.Duration) (seen map[string]int) {
	t.Helper()
	seen = map[string]int{}
	deadline := time.Now().Add(timeout)
	for {
		for _, d := range b.drain(q) {
			seen[d.MessageId]++
		}
		missing := 0
		for id := range want {
			if seen[id] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return seen
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestForwardMiddleware_SourceToRouterToTabQueue(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "fwd")
	b.exchange(ex, "topic")
	tab := b.queue(ex, "customer.42.#", nil)
	pub := newPublisher(t, durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex}))

	source := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = source.Close() })
	fwd, err := durablews.ForwardMiddleware(durablews.Forward{
		Publisher: pub, Topic: ex, Messages: durablews.ForwardBoth,
		RoutingKey: func(m *message.Message) (string, error) {
			return "customer." + m.Metadata.Get("customer") + "." + m.Metadata.Get("event"), nil
		},
		Filter: func(m *message.Message) bool { return m.Metadata.Get("internal") != "yes" },
	})
	require.NoError(t, err)

	r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	r.AddMiddleware(middleware.CorrelationID, fwd)
	r.AddHandler("orders", "orders", source, "ignored-output", gochannel.NewGoChannel(gochannel.Config{}, nil),
		func(msg *message.Message) ([]*message.Message, error) {
			shipped := message.NewMessage(watermill.NewUUID(), []byte(`{"shipped":true}`))
			shipped.Metadata.Set("customer", msg.Metadata.Get("customer"))
			shipped.Metadata.Set("event", "shipped")
			return []*message.Message{shipped}, nil
		})
	runRouter(t, r)

	in := message.NewMessage(watermill.NewUUID(), []byte(`{"order":1}`))
	in.Metadata.Set("customer", "42")
	in.Metadata.Set("event", "paid")
	in.Metadata.Set("tenant", "acme")
	middleware.SetCorrelationID("corr-77", in)
	hidden := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	hidden.Metadata.Set("customer", "42")
	hidden.Metadata.Set("internal", "yes")
	require.NoError(t, source.Publish("orders", in, hidden))

	var got []string
	require.Eventually(t, func() bool {
		for _, d := range b.drain(tab) {
			got = append(got, fmt.Sprintf("%v|%v|%v|%v", d.RoutingKey, d.Headers["tenant"], d.Headers["correlation_id"], d.CorrelationId))
			if d.MessageId == in.UUID {
				assert.Equal(t, in.Payload, message.Payload(d.Body))
			}
		}
		return len(got) >= 3
	}, 10*time.Second, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	for _, d := range b.drain(tab) {
		got = append(got, d.RoutingKey)
	}
	// consumed + its filtered-out twin's produced message + the produced one of in
	assert.ElementsMatch(t, []string{
		"customer.42.paid|acme|corr-77|corr-77",
		"customer.42.shipped|<nil>|corr-77|corr-77",
		"customer.42.shipped|<nil>|<nil>|",
	}, got, "the filtered message is not forwarded but its produced message is; correlation IDs flow to produced messages")
}

func TestForwardMiddleware_WatermillAMQPSourceAndConsumerHandler(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "fwdsrc")
	b.exchange(ex, "topic")
	tab := b.queue(ex, "customer.#", nil)
	srcEx := uniqueName(t, "source")
	srcQueue := uniqueName(t, "srcq")
	t.Cleanup(func() {
		b.deleteExchange(srcEx)
		if ch, err := b.Conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(srcQueue, false, false, false)
			_ = ch.Close()
		}
	})
	pub := newPublisher(t, durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex}))

	// The source is a real broker-backed bus: watermill-amqp on its own exchange.
	srcCfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: srcEx, Kind: durablews.KindFanout})
	wcfg := srcCfg.WatermillAMQPConfig(func(string) string { return srcQueue }, nil)
	sub, err := wamqp.NewSubscriber(wcfg, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	srcPub, err := wamqp.NewPublisher(wcfg, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srcPub.Close() })

	r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	r.AddConsumerHandler("to-browsers", srcEx, sub, durablews.ForwardHandler(durablews.Forward{Publisher: pub, Topic: ex}))
	runRouter(t, r)

	want := map[string]bool{}
	for i := range 50 {
		m := newMsg(fmt.Sprintf("customer.%d.x", i))
		m.Metadata.Set("n", fmt.Sprint(i))
		want[m.UUID] = true
		require.NoError(t, srcPub.Publish(srcEx, m))
	}
	seen := waitForIDs(t, b, tab, want, 20*time.Second)
	for id := range want {
		assert.NotZero(t, seen[id], "source message %s never reached the tab queue", id)
	}
}

func TestForwardMiddleware_NothingLostWhileBrokerConnectionIsCut(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "fwdcut")
	b.exchange(ex, "topic")
	tab := b.queue(ex, "#", nil)

	proxy, proxiedURL := brokertest.ProxiedAMQP(t)
	cfg := durablews.NewConfig(proxiedURL, durablews.Exchange{Name: ex})
	cfg.ConfirmTimeout = 300 * time.Millisecond // fail forwards fast while the broker is away
	cfg.Reconnect = durablews.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2}
	pub := newPublisher(t, cfg)

	source := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1000}, watermill.NopLogger{})
	t.Cleanup(func() { _ = source.Close() })
	fwd, err := durablews.ForwardMiddleware(durablews.Forward{Publisher: pub, Topic: ex})
	require.NoError(t, err)
	var handled, failed atomic.Int64
	countFailures := func(h message.HandlerFunc) message.HandlerFunc {
		return func(m *message.Message) ([]*message.Message, error) {
			out, err := h(m)
			if err != nil {
				failed.Add(1) // the router nacks it and the source redelivers
			} else {
				handled.Add(1)
			}
			return out, err
		}
	}
	r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	r.AddMiddleware(countFailures, fwd)
	// One handler: GoChannel gives every subscriber every message, and the
	// router already handles each delivered message in its own goroutine.
	r.AddConsumerHandler("forward", "events", source, func(*message.Message) error { return nil })
	runRouter(t, r)

	const n = 2000
	want := map[string]bool{}
	var feed sync.WaitGroup
	feed.Add(1)
	go func() {
		defer feed.Done()
		for i := range n {
			m := newMsg(fmt.Sprintf("customer.%d.e", i%7))
			want[m.UUID] = true
			assert.NoError(t, source.Publish("events", m))
			if i%100 == 0 { // spread the feed over the outages below
				time.Sleep(150 * time.Millisecond)
			}
		}
	}()
	cuts := 0
	for range 4 {
		time.Sleep(150 * time.Millisecond)
		proxy.CutAll()
		cuts++
	}
	// A longer outage: the broker is unreachable for a second.
	proxy.SetRefuse(true)
	proxy.CutAll()
	cuts++
	time.Sleep(time.Second)
	proxy.SetRefuse(false)
	feed.Wait()

	seen := waitForIDs(t, b, tab, want, 60*time.Second)
	lost, dups := 0, 0
	for id := range want {
		switch c := seen[id]; {
		case c == 0:
			lost++
		case c > 1:
			dups += c - 1
		}
	}
	t.Logf("router forward under cuts: source %d, forwarded %d distinct, lost %d, duplicates %d, failed forwards (nacked, redelivered) %d, cuts %d",
		n, len(seen), lost, dups, failed.Load(), cuts)
	assert.Zero(t, lost, "source messages missing from the tab queue")
	assert.Positive(t, failed.Load(), "the cut must have failed some forwards, or this test proves nothing")
	assert.Len(t, seen, n)
}

func TestForwardMiddleware_UnroutableGoesToPoisonQueue(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "fwdpoison")
	b.exchange(ex, "topic")
	tab := b.queue(ex, "#", nil)
	pub := newPublisher(t, durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex}))
	bus := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 10}, watermill.NopLogger{})
	t.Cleanup(func() { _ = bus.Close() })
	poisoned, err := bus.Subscribe(context.Background(), "poison")
	require.NoError(t, err)

	fwd, err := durablews.ForwardMiddleware(durablews.Forward{
		Publisher: pub, Topic: ex,
		RoutingKey: func(m *message.Message) (string, error) {
			c := m.Metadata.Get("customer")
			if c == "" {
				return "", errors.New("event has no customer")
			}
			return "customer." + c, nil
		},
	})
	require.NoError(t, err)
	poison, err := middleware.PoisonQueueWithFilter(bus, "poison", func(err error) bool { return errors.Is(err, durablews.ErrRoutingKey) })
	require.NoError(t, err)
	r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	r.AddMiddleware(poison, middleware.Retry{MaxRetries: 2, InitialInterval: time.Millisecond}.Middleware, fwd)
	r.AddConsumerHandler("fwd", "events", bus, func(*message.Message) error { return nil })
	runRouter(t, r)

	bad := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	good := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	good.Metadata.Set("customer", "1")
	require.NoError(t, bus.Publish("events", bad, good))

	select {
	case p := <-poisoned:
		assert.Equal(t, bad.UUID, p.UUID)
		assert.Contains(t, p.Metadata.Get(middleware.ReasonForPoisonedKey), "event has no customer")
		p.Ack()
	case <-time.After(10 * time.Second):
		t.Fatal("the message without a routing key never reached the poison queue")
	}
	seen := waitForIDs(t, b, tab, map[string]bool{good.UUID: true}, 10*time.Second)
	assert.Equal(t, map[string]int{good.UUID: 1}, seen, "the router is not blocked by the bad message")
}

func TestForwardMiddleware_InvalidConfig(t *testing.T) {
	_, err := durablews.ForwardMiddleware(durablews.Forward{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Forward.Publisher is nil")
	assert.Contains(t, err.Error(), "Forward.Topic is empty")

	h := durablews.ForwardHandler(durablews.Forward{Topic: "x"})
	assert.ErrorContains(t, h(message.NewMessage("1", nil)), "Forward.Publisher is nil")
}

// tabsAnswering subscribes to topic of bus like browser tabs and, after
// delay, records a receipt from each of tabs for every message, in tr.
func tabsAnswering(t *testing.T, bus *gochannel.GoChannel, topic string, tr *receipts.Tracker, delay time.Duration, tabs ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := bus.Subscribe(ctx, topic)
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for m := range msgs {
			m.Ack()
			wg.Add(1)
			time.AfterFunc(delay, func() {
				defer wg.Done()
				for _, tab := range tabs {
					tr.Add(receipts.Receipt{MessageID: m.UUID, UserKey: "u", TabID: tab, Subscription: "s"})
				}
			})
		}
	}()
}

func newReceiptTracker(t *testing.T) *receipts.Tracker {
	t.Helper()
	tr, err := receipts.NewTracker(receipts.TrackerConfig{}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func TestForwardMiddleware_ReceiptsHoldTheSourceAckUntilTabsConfirmed(t *testing.T) {
	browsers := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = browsers.Close() })
	tr := newReceiptTracker(t)
	tabsAnswering(t, browsers, "tabs", tr, 150*time.Millisecond, "tab1", "tab2")

	fwd, err := durablews.ForwardMiddleware(durablews.Forward{Publisher: browsers, Topic: "tabs", Messages: durablews.ForwardBoth,
		Receipts: tr, ReceiptTabs: 2, ReceiptTimeout: 5 * time.Second})
	require.NoError(t, err)
	produced := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	h := fwd(func(*message.Message) ([]*message.Message, error) { return []*message.Message{produced}, nil })

	in := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	start := time.Now()
	out, err := h(in)
	require.NoError(t, err)
	assert.Equal(t, []*message.Message{produced}, out)
	assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond, "returned before the tabs' receipts")
	assert.Len(t, tr.Receipts(in.UUID), 2)
	assert.Len(t, tr.Receipts(produced.UUID), 2, "produced messages are waited for too")

	// Three tabs never answer for two: ErrNoReceipt after the timeout.
	fwd3, err := durablews.ForwardMiddleware(durablews.Forward{Publisher: browsers, Topic: "tabs",
		Receipts: tr, ReceiptTabs: 3, ReceiptTimeout: 300 * time.Millisecond})
	require.NoError(t, err)
	other := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	start = time.Now()
	_, err = fwd3(func(*message.Message) ([]*message.Message, error) { return nil, nil })(other)
	assert.ErrorIs(t, err, durablews.ErrNoReceipt)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, other.UUID)
	assert.ErrorContains(t, err, "2 of 3 tab receipts")
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
}

// With a receipt that comes too late the router's retry forwards the same
// UUID again, and the receipt the Tracker kept completes the retry; a tab
// that never answers ends in the poison queue.
func TestForwardMiddleware_NoReceiptIsRetriedThenPoisoned(t *testing.T) {
	bus := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 10}, watermill.NopLogger{})
	t.Cleanup(func() { _ = bus.Close() })
	tr := newReceiptTracker(t)
	tabsAnswering(t, bus, "late-tabs", tr, 300*time.Millisecond, "tab1")
	poisoned, err := bus.Subscribe(context.Background(), "poison")
	require.NoError(t, err)

	var mu sync.Mutex
	attempts := map[string][]error{}
	record := func(h message.HandlerFunc) message.HandlerFunc {
		return func(m *message.Message) ([]*message.Message, error) {
			out, err := h(m)
			mu.Lock()
			attempts[m.UUID] = append(attempts[m.UUID], err)
			mu.Unlock()
			return out, err
		}
	}
	newRouter := func(topic string) {
		fwd, err := durablews.ForwardMiddleware(durablews.Forward{Publisher: bus, Topic: topic, Receipts: tr, ReceiptTimeout: 200 * time.Millisecond})
		require.NoError(t, err)
		poison, err := middleware.PoisonQueueWithFilter(bus, "poison", func(err error) bool { return errors.Is(err, durablews.ErrNoReceipt) })
		require.NoError(t, err)
		r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		require.NoError(t, err)
		r.AddMiddleware(poison, middleware.Retry{MaxRetries: 3, InitialInterval: 50 * time.Millisecond}.Middleware, record, fwd)
		r.AddConsumerHandler("fwd-"+topic, "src-"+topic, bus, func(*message.Message) error { return nil })
		runRouter(t, r)
	}
	newRouter("late-tabs")
	newRouter("silent-tabs") // nobody answers there

	late := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	silent := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	require.NoError(t, bus.Publish("src-late-tabs", late))
	require.NoError(t, bus.Publish("src-silent-tabs", silent))

	select {
	case p := <-poisoned:
		assert.Equal(t, silent.UUID, p.UUID)
		assert.Contains(t, p.Metadata.Get(middleware.ReasonForPoisonedKey), "no delivery receipt")
		p.Ack()
	case <-time.After(10 * time.Second):
		t.Fatal("the message no tab confirmed never reached the poison queue")
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		a := attempts[late.UUID]
		return len(a) > 0 && a[len(a)-1] == nil
	}, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	a := attempts[late.UUID]
	require.GreaterOrEqual(t, len(a), 2)
	assert.ErrorIs(t, a[0], durablews.ErrNoReceipt, "the first attempt timed out")
	assert.Len(t, tr.Receipts(late.UUID), 1, "one receipt, from the first forward; the retry republished the same UUID")
	assert.Len(t, attempts[silent.UUID], 4, "1 + MaxRetries attempts")
}

func TestForwardMiddleware_InvalidReceiptConfig(t *testing.T) {
	pub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pub.Close() })
	_, err := durablews.ForwardMiddleware(durablews.Forward{Publisher: pub, Topic: "x", ReceiptTimeout: time.Second})
	assert.ErrorContains(t, err, "Forward.Receipts is nil")
	_, err = durablews.ForwardMiddleware(durablews.Forward{Publisher: pub, Topic: "x", Receipts: newReceiptTracker(t), ReceiptTabs: -1})
	assert.ErrorContains(t, err, "ReceiptTabs -1 is negative")
}

// End to end on the broker: the router forwards through the Publisher to
// a tab queue; a tab reads it and sends its receipt batch to the receipts
// exchange as the STOMP plugin would, too late for the first attempt; the
// service's receipts.Subscriber and Tracker read it; the retried forward
// (same UUID) completes with that receipt and the source message is acked.
func TestForwardMiddleware_ReceiptsThroughTheBroker(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "fwdrcpt")
	b.exchange(ex, "topic")
	tabQ := b.queue(ex, "customer.#", nil)
	rex, rq := uniqueName(t, "receipts"), uniqueName(t, "svc-receipts")
	t.Cleanup(func() {
		if ch, err := b.Conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(rq, false, false, false)
			_ = ch.ExchangeDelete(rex, false, false)
			_ = ch.Close()
		}
	})
	sub, err := receipts.NewSubscriber(receipts.Config{URL: amqpURL(), Exchange: rex, Queue: rq}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	tr, err := receipts.NewTracker(receipts.TrackerConfig{Subscriber: sub}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })

	// The tab: handles each message once (a redelivered UUID is a duplicate
	// it drops), sends the receipt 400 ms after the first copy.
	tabCh, err := b.Conn.Channel()
	require.NoError(t, err)
	deliveries, err := tabCh.Consume(tabQ, "", false, false, false, false, nil)
	require.NoError(t, err)
	var mu sync.Mutex
	copies := map[string]int{}
	var sent sync.WaitGroup
	go func() {
		for d := range deliveries {
			mu.Lock()
			copies[d.MessageId]++
			first := copies[d.MessageId] == 1
			mu.Unlock()
			_ = d.Ack(false)
			if !first {
				continue
			}
			sent.Add(1)
			time.AfterFunc(400*time.Millisecond, func() {
				defer sent.Done()
				p, err := receipts.NewPublishing("tab1", []receipts.Entry{{ID: d.MessageId, Subscription: "orders"}})
				if !assert.NoError(t, err) {
					return
				}
				ch, err := b.Conn.Channel()
				if !assert.NoError(t, err) {
					return
				}
				defer ch.Close()
				assert.NoError(t, ch.PublishWithContext(context.Background(), rex, "u1.tab1", false, false, p))
			})
		}
	}()
	t.Cleanup(func() { _ = tabCh.Close(); sent.Wait() })

	pub := newPublisher(t, durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex}))
	source := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = source.Close() })
	fwd, err := durablews.ForwardMiddleware(durablews.Forward{Publisher: pub, Topic: ex, Receipts: tr, ReceiptTimeout: 250 * time.Millisecond})
	require.NoError(t, err)
	var attempts []error
	record := func(h message.HandlerFunc) message.HandlerFunc {
		return func(m *message.Message) ([]*message.Message, error) {
			out, err := h(m)
			mu.Lock()
			attempts = append(attempts, err)
			mu.Unlock()
			return out, err
		}
	}
	r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	r.AddMiddleware(middleware.Retry{MaxRetries: 10, InitialInterval: 100 * time.Millisecond}.Middleware, record, fwd)
	r.AddConsumerHandler("to-browsers", "orders", source, func(*message.Message) error { return nil })
	runRouter(t, r)

	in := newMsg("customer.1.paid")
	require.NoError(t, source.Publish("orders", in))
	got, err := tr.WaitTabs(brokertest.Ctx(t, 15*time.Second), in.UUID, 1)
	require.NoError(t, err)
	assert.Equal(t, "u1", got[0].UserKey)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(attempts) > 0 && attempts[len(attempts)-1] == nil
	}, 10*time.Second, 10*time.Millisecond, "the forward never completed")
	mu.Lock()
	defer mu.Unlock()
	assert.ErrorIs(t, attempts[0], durablews.ErrNoReceipt)
	assert.GreaterOrEqual(t, copies[in.UUID], 2, "the retry republished the same UUID")
	t.Logf("attempts %d, copies in the tab queue %d, receipts %d", len(attempts), copies[in.UUID], len(tr.Receipts(in.UUID)))
}
