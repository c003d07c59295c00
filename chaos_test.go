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
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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
	// The tab queues stand for queues bound long before the crash. RabbitMQ
	// 3.10.8 answers bind-ok before the binding's Mnesia commit decision is
	// on disk (testbroker.SyncMetadata); the kill comes ~1 s after this
	// setup, and in 1 of ~50 runs it undid the last binding: that queue got
	// nothing confirmed after the restart (lost ~16,000; list_bindings
	// lacked chaos -> tab-chaos-2). That broker trap is documented in the
	// README and shown by killrepro -trap; this test is about the publisher.
	require.NoError(t, node.SyncMetadata())

	cfg := durablews.NewConfig("amqp://guest:guest@"+proxy.Addr()+"/", durablews.Exchange{Name: ex, Passive: true})
	cfg.ConfirmTimeout = 5 * time.Second
	cfg.Reconnect = durablews.Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond, Multiplier: 2}
	events := &eventLog{}
	pub, err := durablews.NewPublisher(cfg, events)
	require.NoError(t, err)

	// Publishers run until stopped: without a soak duration, once at least
	// minMessages were attempted and minCuts cuts plus the restart
	// happened, so a fast machine cannot finish before the faults do.
	const minMessages, minCuts = 20000, 10
	var (
		mu        sync.Mutex
		confirmed = make(map[string]confirmation, 1<<16)
		phase     atomic.Int32       // chaosBeforeKill, chaosKilled, chaosRestarted
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
				from := chaosPhase(phase.Load())
				batch := make([]*message.Message, size)
				for j := range batch {
					batch[j] = message.NewMessage(watermill.NewUUID(), []byte(fmt.Sprintf(`{"g":%d,"i":%d}`, g, i)))
					batch[j].Metadata.Set(durablews.RoutingKeyMetadataKey, fmt.Sprintf("customer.%d.e", g))
				}
				ok, bad := outcome(t, batch, pub.Publish(ex, batch...))
				c := confirmation{from: from, to: chaosPhase(phase.Load()), at: time.Since(start), g: g}
				mu.Lock()
				for _, id := range ok {
					confirmed[id] = c
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
	var killedAt, restartedAt time.Duration
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
			phase.Store(int32(chaosKilled))
			killedAt = time.Since(start)
			require.NoError(t, node.Kill())
			time.Sleep(500 * time.Millisecond)
			if err := node.StartAgain(); err != nil {
				// Rarely, on a loaded machine, the first boot after a kill
				// fails (await_startup exits 69); that is the test node,
				// not the publisher under test, so try once more.
				t.Logf("restart after kill -9 failed, retrying once: %.300v", err)
				require.NoError(t, node.StartAgain())
			}
			restartedAt = time.Since(start)
			phase.Store(int32(chaosRestarted))
			restarts++
		}
	}
	elapsed := time.Since(start)
	require.NoError(t, pub.Close())

	conn := dialNode(t, node)
	defer conn.Close()
	mu.Lock()
	defer mu.Unlock()
	lost, dups := 0, 0
	var lossReport strings.Builder
	for _, q := range tabQueues {
		seen := readQueue(t, conn, q)
		qLost := lostIn(q, seen, confirmed)
		lost += qLost.n
		if qLost.n > 0 {
			lossReport.WriteString(qLost.String())
		}
		for _, c := range seen {
			dups += c - 1
		}
	}
	if lost > 0 {
		t.Logf("LOSS: killed at %v, restarted (node ready) at %v, cuts every 300 ms from the start\n%s",
			killedAt.Round(time.Millisecond), restartedAt.Round(time.Millisecond), lossReport.String())
		t.Logf("publisher connection events:\n%s", events.String(start))
		t.Logf("after the run the node lists:\n%s", chaosNodeState(node))
	}
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

// Chaos phases, to say when a lost message was published and confirmed.
type chaosPhase int32

const (
	chaosBeforeKill chaosPhase = iota
	chaosKilled                // kill -9 sent, StartAgain not returned yet (the node may already accept connections)
	chaosRestarted             // StartAgain returned
)

func (p chaosPhase) String() string {
	return [...]string{"before-kill", "until-restart-returned", "restarted"}[p]
}

// confirmation is when a confirmed message's Publish call started (from)
// and returned (to, at), and which publishing goroutine made it.
type confirmation struct {
	from, to chaosPhase
	at       time.Duration
	g        int
}

// queueLoss describes the confirmed messages missing from one queue.
type queueLoss struct {
	queue            string
	n                int
	byPhase          map[string]int // "from->to" -> lost
	byGoroutine      map[int]int
	first, last      time.Duration // confirm times of the first and last lost message
	foundInLossRange int           // confirmed in [first, last] and present in the queue
}

func lostIn(q string, seen map[string]int, confirmed map[string]confirmation) queueLoss {
	l := queueLoss{queue: q, byPhase: map[string]int{}, byGoroutine: map[int]int{}}
	for id, c := range confirmed {
		if seen[id] > 0 {
			continue
		}
		if l.n == 0 || c.at < l.first {
			l.first = c.at
		}
		if c.at > l.last {
			l.last = c.at
		}
		l.n++
		l.byPhase[c.from.String()+"->"+c.to.String()]++
		l.byGoroutine[c.g]++
	}
	for id, c := range confirmed {
		if seen[id] > 0 && l.n > 0 && c.at >= l.first && c.at <= l.last {
			l.foundInLossRange++
		}
	}
	return l
}

func (l queueLoss) String() string {
	return fmt.Sprintf("  queue %s: lost %d, by publish phase %v, by goroutine %v, confirmed between %v and %v; %d messages confirmed in that interval are in the queue\n",
		l.queue, l.n, l.byPhase, l.byGoroutine, l.first.Round(time.Millisecond), l.last.Round(time.Millisecond), l.foundInLossRange)
}

// eventLog is a watermill logger that keeps the publisher's Info and Error
// lines (connects, losses, reconnects) with their times.
type eventLog struct {
	mu    sync.Mutex
	lines []string
	times []time.Time
}

func (e *eventLog) add(level, msg string, err error, f watermill.LogFields) {
	e.mu.Lock()
	defer e.mu.Unlock()
	line := level + " " + msg
	if err != nil {
		line += ": " + err.Error()
	}
	if len(f) > 0 {
		line += fmt.Sprintf(" %v", f)
	}
	e.lines = append(e.lines, line)
	e.times = append(e.times, time.Now())
}

func (e *eventLog) Error(msg string, err error, f watermill.LogFields) { e.add("ERROR", msg, err, f) }
func (e *eventLog) Info(msg string, f watermill.LogFields)             { e.add("INFO", msg, nil, f) }
func (e *eventLog) Debug(string, watermill.LogFields)                  {}
func (e *eventLog) Trace(string, watermill.LogFields)                  {}
func (e *eventLog) With(watermill.LogFields) watermill.LoggerAdapter   { return e }

// String lists the events with their times relative to base.
func (e *eventLog) String(base time.Time) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var b strings.Builder
	for i, l := range e.lines {
		fmt.Fprintf(&b, "  %8v %s\n", e.times[i].Sub(base).Round(time.Millisecond), l)
	}
	return b.String()
}

// chaosNodeState is what the node lists about its queues and bindings, and
// the broker log lines about queues, recovery, Mnesia and errors.
func chaosNodeState(node *testbroker.Node) string {
	var b strings.Builder
	for _, args := range [][]string{
		{"list_queues", "name", "durable", "state", "pid", "messages", "messages_persistent", "consumers"},
		{"list_bindings", "source_name", "destination_name", "routing_key"},
		{"list_exchanges", "name", "type", "durable"},
	} {
		out, err := node.Ctl(args...)
		fmt.Fprintf(&b, "--- rabbitmqctl %s (err %v) ---\n%s\n", strings.Join(args, " "), err, out)
	}
	// list_bindings shows rabbit_route (what routing uses); the durable
	// records are what the restart recovered from.
	for _, tab := range []string{"rabbit_durable_route", "rabbit_semi_durable_route", "rabbit_route", "rabbit_topic_trie_binding", "rabbit_durable_queue"} {
		out, err := node.Ctl("eval", "ets:tab2list("+tab+").")
		fmt.Fprintf(&b, "--- %s (err %v) ---\n%s\n", tab, err, out)
	}
	if dir := os.Getenv("DURABLEWS_CHAOS_KEEP"); dir != "" {
		dst := filepath.Join(dir, node.Name())
		out, err := exec.Command("cp", "-a", node.BaseDir(), dst).CombinedOutput()
		fmt.Fprintf(&b, "--- node directory copied to %s (err %v %s) ---\n", dst, err, out)
	}
	logFile := filepath.Join(node.LogDir(), node.Name()+".log")
	data, err := os.ReadFile(logFile)
	fmt.Fprintf(&b, "--- %s lines of interest (read err %v) ---\n", filepath.Base(logFile), err)
	interesting := regexp.MustCompile(`(?i)\[(error|warning)\]|crash|tab-chaos|recover|mnesia|starting rabbitmq|queue|binding|msg_store|unclean|dets|exit`)
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if interesting.MatchString(l) {
			lines = append(lines, l)
		}
	}
	if len(lines) > 300 {
		lines = append(lines[:100], append([]string{fmt.Sprintf("... %d lines left out ...", len(lines)-300)}, lines[len(lines)-200:]...)...)
	}
	b.WriteString(strings.Join(lines, "\n"))
	return b.String()
}
