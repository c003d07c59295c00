package durablews_test

// The promise under faults: a message whose Publish returned nil reaches
// every tab queue bound to it, while the network is cut repeatedly and the
// broker is killed (-9) and restarted. Runs on a private RabbitMQ node
// (internal/testbroker) behind a TCP fault proxy (internal/faultproxy).
//
// DURABLEWS_SOAK=10m runs the same for ten minutes (a manual soak; aim for
// >= 500,000 messages).

import (
	"errors"
	"fmt"
	"os"
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
	"github.com/durablews/durablews/internal/faultproxy"
	"github.com/durablews/durablews/internal/testbroker"
)

// dialNode connects straight to a private node (not through the proxy),
// retrying while it boots.
func dialNode(t *testing.T, node *testbroker.Node) *amqp.Connection {
	t.Helper()
	var lastErr error
	for range 100 {
		conn, err := amqp.Dial(node.AMQPURL())
		if err == nil {
			return conn
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, lastErr)
	return nil
}

// readQueue consumes every message in q and returns how often each
// message id was seen.
func readQueue(t *testing.T, conn *amqp.Connection, q string) map[string]int {
	t.Helper()
	ch, err := conn.Channel()
	require.NoError(t, err)
	defer ch.Close()
	info, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Qos(1000, 0, false))
	// Manual acks with a prefetch keep memory bounded on soak-sized queues.
	deliveries, err := ch.Consume(q, "", false, false, false, false, nil)
	require.NoError(t, err)
	seen := make(map[string]int, min(info.Messages, 1<<16))
	timeout := time.After(5 * time.Minute)
	for n := 0; n < info.Messages; n++ {
		select {
		case d := <-deliveries:
			seen[d.MessageId]++
			if n%500 == 499 || n == info.Messages-1 {
				require.NoError(t, d.Ack(true))
			}
		case <-timeout:
			t.Fatalf("queue %s: read %d of %d messages", q, n, info.Messages)
		}
	}
	return seen
}

func TestChaos_NothingConfirmedIsLost(t *testing.T) {
	soak, _ := time.ParseDuration(os.Getenv("DURABLEWS_SOAK"))
	node := testbroker.Start(t, testbroker.Options{Plugins: []string{}})
	proxy, err := faultproxy.New(node.AMQPAddr())
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() })

	const queues = 3
	ex := "chaos"
	setup := dialNode(t, node)
	sch, err := setup.Channel()
	require.NoError(t, err)
	require.NoError(t, sch.ExchangeDeclare(ex, "topic", true, false, false, false, nil))
	tabQueues := make([]string, queues)
	for i := range tabQueues {
		tabQueues[i] = fmt.Sprintf("tab-chaos-%d", i)
		_, err := sch.QueueDeclare(tabQueues[i], true, false, false, false, nil)
		require.NoError(t, err)
		require.NoError(t, sch.QueueBind(tabQueues[i], "customer.#", ex, false, nil))
	}
	_ = setup.Close()

	cfg := durablews.NewConfig("amqp://guest:guest@"+proxy.Addr()+"/", durablews.Exchange{Name: ex, Passive: true})
	cfg.ConfirmTimeout = 5 * time.Second
	cfg.Reconnect = durablews.Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond, Multiplier: 2}
	pub, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	require.NoError(t, err)

	// Publishers run until stopped: without a soak duration, once at least
	// minMessages were attempted and minCuts cuts plus the restart
	// happened, so a fast machine cannot finish before the faults do.
	const minMessages, minCuts = 20000, 10
	var (
		mu        sync.Mutex
		confirmed = make(map[string]bool, 1<<16)
		failed    = map[string]int{} // failure reason -> count
		attempted atomic.Int64
		stopPub   = make(chan struct{})
		pubs      sync.WaitGroup
	)
	start := time.Now()
	for g := range 8 {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for i := 0; ; i++ {
				select {
				case <-stopPub:
					return
				default:
				}
				size := 1 + (i%4)*3 // batches of 1, 4, 7, 10
				attempted.Add(int64(size))
				batch := make([]*message.Message, size)
				for j := range batch {
					batch[j] = message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf(`{"g":%d,"i":%d}`, g, i)))
					batch[j].Metadata.Set(durablews.RoutingKeyMetadataKey, fmt.Sprintf("customer.%d.e", g))
				}
				ok, bad := outcome(t, batch, pub.Publish(ex, batch...))
				mu.Lock()
				for _, id := range ok {
					confirmed[id] = true
				}
				for _, f := range bad {
					failed[reason(f.Err)]++
				}
				mu.Unlock()
			}
		}()
	}

	// Faults: a cut every 300 ms, and one kill -9 + restart of the broker
	// (after the third cut, or a third into a soak).
	cuts, restarts := 0, 0
	deadline := start.Add(soak)
	for {
		time.Sleep(300 * time.Millisecond)
		enough := attempted.Load() >= minMessages && cuts >= minCuts && restarts == 1
		if soak == 0 && restarts == 1 && time.Since(start) > 3*time.Minute {
			// A publisher that stopped making progress: end here and let
			// the assertions below say so, instead of go test's timeout.
			t.Errorf("only %d of %d messages attempted after %v", attempted.Load(), minMessages, time.Since(start).Round(time.Second))
			enough = true
		}
		if soak > 0 {
			enough = time.Now().After(deadline)
		}
		if enough {
			close(stopPub)
			pubs.Wait()
			break
		}
		proxy.CutAll()
		cuts++
		due := cuts >= 3
		if soak > 0 {
			due = time.Since(start) > soak/3
		}
		if restarts == 0 && due {
			require.NoError(t, node.Kill())
			time.Sleep(500 * time.Millisecond)
			if err := node.StartAgain(); err != nil {
				// Rarely, on a loaded machine, the first boot after a kill
				// fails (await_startup exits 69); that is the test node,
				// not the publisher under test, so try once more.
				t.Logf("restart after kill -9 failed, retrying once: %.300v", err)
				require.NoError(t, node.StartAgain())
			}
			restarts++
		}
	}
	elapsed := time.Since(start)
	require.NoError(t, pub.Close())

	conn := dialNode(t, node)
	defer conn.Close()
	lost, dups := 0, 0
	for _, q := range tabQueues {
		seen := readQueue(t, conn, q)
		for id := range confirmed {
			if seen[id] == 0 {
				lost++
			}
		}
		for _, c := range seen {
			dups += c - 1
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("failures by reason (not confirmed, reported to the caller): %v", failed)
	line := fmt.Sprintf("chaos: published %d confirmed %d lost %d duplicates %d cuts %d restarts %d queues %d in %v (%.0f confirmed msg/s)",
		attempted.Load(), len(confirmed), lost, dups, cuts, restarts, queues, elapsed.Round(time.Millisecond),
		float64(len(confirmed))/elapsed.Seconds())
	fmt.Println(line) // the summary line, also without -v
	assert.Zero(t, lost, "confirmed messages missing from a tab queue")
	assert.GreaterOrEqual(t, cuts, minCuts, "too few cuts to mean anything")
	assert.Equal(t, 1, restarts)
	assert.Greater(t, len(confirmed), minMessages*3/4, "most messages must get through despite the faults")
}

// reason is a failure's sentinel, for the summary.
func reason(err error) string {
	for _, s := range []error{durablews.ErrConfirmTimeout, durablews.ErrConnectionLost, durablews.ErrNacked, durablews.ErrNotSent, durablews.ErrUnroutable} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return err.Error()
}

// Under a memory alarm RabbitMQ blocks publishing connections. Publish must
// neither lose nor falsely confirm: it waits up to ConfirmTimeout and fails,
// or succeeds when the alarm clears in time.
func TestFlowControl_MemoryAlarm(t *testing.T) {
	node := testbroker.Start(t, testbroker.Options{Plugins: []string{}})
	conn := dialNode(t, node)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.ExchangeDeclare("alarm", "topic", true, false, false, false, nil))
	_, err = ch.QueueDeclare("tab-alarm", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("tab-alarm", "#", "alarm", false, nil))

	cfg := durablews.NewConfig(node.AMQPURL(), durablews.Exchange{Name: "alarm"})
	cfg.ConfirmTimeout = 2 * time.Second
	pub, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	require.NoError(t, err)
	defer pub.Close()
	require.NoError(t, pub.Publish("alarm", newMsg("k")), "warm-up before the alarm")

	require.NoError(t, node.SetMemoryAlarm(true))
	blocked := newMsg("k")
	start := time.Now()
	err = pub.Publish("alarm", blocked)
	waited := time.Since(start)
	require.Error(t, err, "nothing can be confirmed while the broker blocks publishers")
	assert.ErrorIs(t, err, durablews.ErrConfirmTimeout)
	assert.InDelta(t, cfg.ConfirmTimeout.Seconds(), waited.Seconds(), 1.0, "waits for its timeout, no longer")
	t.Logf("blocked publish failed after %v: %v", waited.Round(time.Millisecond), err)

	// Cleared in time: the publish that is waiting succeeds.
	cleared := newMsg("k")
	done := make(chan error, 1)
	cfg.ConfirmTimeout = 20 * time.Second
	pub2, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	require.NoError(t, err)
	defer pub2.Close()
	go func() { done <- pub2.Publish("alarm", cleared) }()
	time.Sleep(time.Second)
	select {
	case err := <-done:
		t.Fatalf("Publish returned during the alarm: %v", err)
	default:
	}
	require.NoError(t, node.SetMemoryAlarm(false))
	require.NoError(t, <-done, "the alarm cleared within ConfirmTimeout")

	seen := readQueue(t, conn, "tab-alarm")
	assert.Equal(t, 1, seen[cleared.UUID], "confirmed message is in the queue")
	assert.LessOrEqual(t, seen[blocked.UUID], 1, "the failed one may arrive late (at most once), never falsely confirmed")
	t.Logf("the message whose Publish failed reached the queue %d time(s) after the alarm cleared", seen[blocked.UUID])
}
