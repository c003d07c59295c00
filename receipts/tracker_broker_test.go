package receipts_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-stomp/stomp/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/receipts"
)

// service is a Subscriber with a Tracker on it, as a service runs them.
type service struct {
	sub *receipts.Subscriber
	tr  *receipts.Tracker
}

func startService(t *testing.T, top receiptsTopology, onReceipt func(receipts.Receipt)) *service {
	t.Helper()
	sub := subscriber(t, top.config())
	tr, err := receipts.NewTracker(receipts.TrackerConfig{Subscriber: sub, OnReceipt: onReceipt}, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	return &service{sub: sub, tr: tr}
}

func (s *service) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, s.tr.Close())
	require.NoError(t, s.sub.Close())
}

// A restarted service loses no receipt: what tabs sent while it was down
// waits in its durable queue and arrives after the restart; what it was
// handling when it stopped comes again.
func TestTracker_RestartedServiceLosesNoReceipt(t *testing.T) {
	b := newBroker(t)
	top := newTopology(t, b)
	var mu sync.Mutex
	seen := map[string]int{} // message id/tab -> OnReceipt calls, over both runs
	onReceipt := func(r receipts.Receipt) { mu.Lock(); seen[r.MessageUUID()]++; mu.Unlock() }

	svc := startService(t, top, onReceipt)
	const n = 40
	for i := range n {
		top.send(t, "alice", "tab1", entry(fmt.Sprint("before-", i)), entry(fmt.Sprint("both-", i)))
	}
	for i := range n {
		_, err := svc.tr.WaitTabs(brokertest.Ctx(t, 10*time.Second), fmt.Sprint("before-", i), 1)
		require.NoError(t, err)
	}
	// Stop while tabs keep sending.
	var sending sync.WaitGroup
	sending.Add(1)
	go func() {
		defer sending.Done()
		for i := range n {
			top.send(t, "alice", "tab2", entry(fmt.Sprint("during-", i)), entry(fmt.Sprint("both-", i)))
		}
	}()
	time.Sleep(5 * time.Millisecond)
	svc.stop(t)
	sending.Wait()
	for i := range n {
		top.send(t, "bob", "tab3", entry(fmt.Sprint("down-", i)))
	}
	t.Logf("%d batches waiting in the durable queue while the service is down", top.ready(t))

	svc2 := startService(t, top, onReceipt)
	for i := range n {
		_, err := svc2.tr.WaitUser(brokertest.Ctx(t, 20*time.Second), fmt.Sprint("down-", i), "bob")
		require.NoError(t, err, "receipt sent while the service was down")
	}
	// Each "during" receipt reached one of the two runs (or both: a batch
	// the first run had not settled when it stopped comes again).
	complete := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 5*n
	}
	assert.Eventually(t, complete, 20*time.Second, 20*time.Millisecond)
	svc2.stop(t)

	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		for _, id := range []string{"before-%d/tab1", "both-%d/tab1", "during-%d/tab2", "both-%d/tab2", "down-%d/tab3"} {
			assert.NotZero(t, seen[fmt.Sprintf(id, i)], "receipt %s lost", fmt.Sprintf(id, i))
		}
	}
	assert.Len(t, seen, 5*n)
	assert.Zero(t, top.ready(t))
}

// A service whose connection dies mid-stream (a crash, a network cut)
// loses no receipt either: the batches it had received but not acked go
// back to the queue and reach the next instance.
func TestTracker_CrashedServiceLosesNoReceipt(t *testing.T) {
	b := newBroker(t)
	top := newTopology(t, b)
	var mu sync.Mutex
	seen := map[string]int{}
	onReceipt := func(r receipts.Receipt) {
		mu.Lock()
		seen[r.MessageID]++
		mu.Unlock()
		time.Sleep(time.Millisecond) // a service doing some work: batches queue up in the prefetch
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }

	proxy, proxied := brokertest.ProxiedAMQP(t)
	cfg := top.config()
	cfg.URL = proxied
	sub1 := subscriber(t, cfg)
	tr1, err := receipts.NewTracker(receipts.TrackerConfig{Subscriber: sub1, OnReceipt: onReceipt}, nil)
	require.NoError(t, err)
	const n = 300
	for i := range n {
		top.send(t, "u", "tab1", entry(fmt.Sprint("m", i)))
		if i == n/3 {
			require.Eventually(t, func() bool { return count() > 10 }, 10*time.Second, time.Millisecond)
			proxy.SetRefuse(true) // the service is gone for good
			proxy.CutAll()
		}
	}
	crashed := count()
	t.Logf("the first instance recorded %d receipts before its connection died; %d batches wait in the queue", crashed, top.ready(t))

	svc2 := startService(t, top, onReceipt)
	assert.Eventually(t, func() bool { return count() == n }, 30*time.Second, 20*time.Millisecond, "receipts lost")
	svc2.stop(t)

	// The first instance comes back: it reconnects and consumes again.
	proxy.SetRefuse(false)
	assert.Eventually(t, func() bool { return consumers(t, top) == 1 }, 20*time.Second, 20*time.Millisecond, "the first instance did not reconnect")
	require.NoError(t, tr1.Close())
	require.NoError(t, sub1.Close())
	assert.Less(t, crashed, n, "the cut came too late to prove anything")
}

func consumers(t *testing.T, top receiptsTopology) int {
	t.Helper()
	return top.inspect(t).Consumers
}

// The receipts a tab sends over Web-STOMP, exactly as the browser client
// does (SEND to /exchange/<exchange>/<userKey>.<tabId> with a receipt
// header), reach the Tracker with the routing key's user and tab.
func TestTracker_ReceiptsSentOverWebSTOMP(t *testing.T) {
	b := newBroker(t)
	top := newTopology(t, b)
	svc := startService(t, top, nil)
	require.NoError(t, svc.sub.SubscribeInitialize("#"))

	ctx := brokertest.Ctx(t, 20*time.Second)
	ws, _, err := websocket.Dial(ctx, brokertest.WebSTOMPURL(), &websocket.DialOptions{Subprotocols: []string{"v12.stomp"}})
	require.NoError(t, err, "needs Web-STOMP on %s (`make broker`)", brokertest.WebSTOMPURL())
	life, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, err := stomp.Connect(websocket.NetConn(life, ws, websocket.MessageText),
		stomp.ConnOpt.Host("/"), stomp.ConnOpt.Login("guest", "guest"), stomp.ConnOpt.HeartBeat(0, 0))
	require.NoError(t, err)
	defer func() { _ = conn.Disconnect(); _ = ws.CloseNow() }()

	body, err := receipts.EncodeBatch("k3xq7r2m4a6b8c2d", []receipts.Entry{
		{ID: "5b9f2c1e-0000-4000-8000-000000000001", Subscription: "orders", HandledAt: time.UnixMilli(1718000000123)},
		{ID: "5b9f2c1e-0000-4000-8000-000000000002", Subscription: "prices", HandledAt: time.UnixMilli(1718000000124), Stream: "prices", Offset: 12},
	})
	require.NoError(t, err)
	// go-stomp's WithReceipt waits for the broker's RECEIPT, as the client does.
	require.NoError(t, conn.Send("/exchange/"+top.exchange+"/0123456789abcdef.k3xq7r2m4a6b8c2d", receipts.ContentType, body,
		stomp.SendOpt.Receipt, stomp.SendOpt.Header("persistent", "true"), stomp.SendOpt.Header(receipts.Header, "1")))

	got, err := svc.tr.WaitTabs(ctx, "5b9f2c1e-0000-4000-8000-000000000002", 1)
	require.NoError(t, err)
	assert.Equal(t, "0123456789abcdef", got[0].UserKey)
	assert.Equal(t, "k3xq7r2m4a6b8c2d", got[0].TabID)
	assert.Equal(t, int64(12), got[0].Offset)
	r, err := svc.tr.WaitUser(ctx, "5b9f2c1e-0000-4000-8000-000000000001", "0123456789abcdef")
	require.NoError(t, err)
	assert.Equal(t, time.UnixMilli(1718000000123).UTC(), r.HandledAt)
	assert.Equal(t, receipts.Stats{Batches: 1, Receipts: 2}, svc.sub.Stats())
}
