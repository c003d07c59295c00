package durablews_test

// What RabbitMQ does with a classic tab queue whose node is down, on a
// private 3-node cluster (internal/testbroker; TestCluster runs it), for each
// version of the matrix (classicDownBehaviour). The assertions state the
// broker's behaviour, so this test fails if a RabbitMQ upgrade changes it and
// the README's "what is and is not guaranteed when a node dies" must be
// revisited.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/stomptab"
	"github.com/durablews/durablews/internal/testbroker"
)

// classicDown is what a version does once the cluster knows the classic
// queue's node is down.
type classicDown struct {
	plain, mandatory, both tally // raw publishes: only to the queue, with mandatory, also to a live queue
	// The durablews Publisher's answer to the same three (nil: confirmed).
	pubPlain, pubMandatory, pubBoth error
	// declareReason is in the 404 of a passive declare on another node.
	declareReason string
}

// classicDownBehaviour, measured:
//   - 3.10: the message is dropped and confirmed (basic.ack; with mandatory,
//     basic.return 312 NO_ROUTE first); routed also to a live queue, a plain
//     ack: nothing tells the publisher the classic queue missed it.
//   - 4.x: every such publish is nacked, also one that a live queue took; the
//     Publisher reports ErrNacked (a retry would duplicate the copy in the
//     live queue, which the browser client drops by message id). A passive
//     declare on another node waits for about a minute and ends in a 404
//     "due to timeout".
func classicDownBehaviour(version string) classicDown {
	if strings.HasPrefix(version, "3.") {
		return classicDown{
			plain: tally{outAck: 20}, mandatory: tally{outReturnAck: 20}, both: tally{outAck: 20},
			pubPlain: nil, pubMandatory: durablews.ErrUnroutable, pubBoth: nil,
			declareReason: "down or inaccessible",
		}
	}
	return classicDown{
		plain: tally{outNack: 20}, mandatory: tally{outNack: 20}, both: tally{outNack: 20},
		pubPlain: durablews.ErrNacked, pubMandatory: durablews.ErrNacked, pubBoth: durablews.ErrNacked,
		declareReason: "due to timeout",
	}
}

// testClassicTabQueueNodeDown runs as a subtest of TestCluster.
func testClassicTabQueueNodeDown(t *testing.T, c *testbroker.Cluster) {
	n1, n2, n3 := c.Node(0), c.Node(1), c.Node(2)
	const ex = "cl"

	// Topology as a tab makes it: the tab's Web-STOMP connection lands on
	// node 1, so its classic queue lives there (client-local placement).
	admin := dialNode(t, n2)
	defer admin.Close()
	ach, err := admin.Channel()
	require.NoError(t, err)
	require.NoError(t, ach.ExchangeDeclare(ex, "topic", true, false, false, false, nil))
	qc := stomptab.RandomQueueName("classic")
	tab1 := dialNodeTab(t, n1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	_, err = tab1.Subscribe(ctx, stomptab.Sub{Exchange: ex, BindingKey: "only.#", QueueName: qc})
	cancel()
	require.NoError(t, err)
	require.NoError(t, tab1.Close())
	// "both.#" also reaches a live (quorum) queue.
	qq := stomptab.RandomQueueName("quorum")
	_, err = ach.QueueDeclare(qq, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	require.NoError(t, err)
	require.NoError(t, ach.QueueBind(qq, "both.#", ex, false, nil))
	require.NoError(t, ach.QueueBind(qc, "both.#", ex, false, nil))
	lastDeclare := time.Now()

	pub := newRawPublisher(t, n2)
	stored := map[string]bool{} // ids confirmed without a return while the queue was up
	for i := range 5 {
		id := fmt.Sprintf("before-%d", i)
		out, err := pub.publish(ex, "only.x", id, true)
		require.NoError(t, err)
		require.Equal(t, outAck, out, "node 1 up: routed and confirmed")
		stored[id] = true
	}
	// §6 of the notes: records declared just before a kill -9 can be lost;
	// give Mnesia time, and say how long it was.
	time.Sleep(5*time.Second - time.Since(lastDeclare))

	// The window: publish (mandatory) through node 2 while node 1 is killed
	// and until the cluster has noticed, and record every answer.
	type answer struct {
		id, out string
		at      time.Time
	}
	var (
		mu      sync.Mutex
		answers []answer
		stop    = make(chan struct{})
		done    = make(chan struct{})
	)
	var (
		killAt time.Time
	)
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("window-%d", i)
			out, err := pub.publish(ex, "only.x", id, true)
			if err != nil {
				out = "error"
			}
			mu.Lock()
			answers = append(answers, answer{id, out, time.Now()})
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	time.Sleep(500 * time.Millisecond)
	killAt = time.Now() // read after done is closed
	t.Logf("killing node 1 (-9) %v after the last declare/bind", time.Since(lastDeclare).Round(time.Millisecond))
	require.NoError(t, n1.Kill())
	waitRunning(t, c, n2, n3)
	noticed := time.Since(killAt)
	time.Sleep(time.Second)
	close(stop)
	<-done
	mu.Lock()
	window, beforeKill, afterKill := tally{}, tally{}, tally{}
	var nacked []string
	for _, a := range answers {
		window[a.out]++
		if a.at.Before(killAt) {
			beforeKill[a.out]++
		} else {
			afterKill[a.out]++
		}
		switch a.out {
		case outAck:
			// Acked without a return: the broker says it is stored.
			stored[a.id] = true
		case outNack:
			nacked = append(nacked, a.id)
		}
	}
	mu.Unlock()
	t.Logf("window (mandatory, only to the classic queue), %d publishes from 0.5 s before the kill to 1 s after the cluster noticed (%v): before the kill %v; after %v",
		len(answers), noticed.Round(time.Millisecond), beforeKill, afterKill)
	require.Zero(t, window["error"], "the publishing channel on node 2 must survive node 1's death")
	assert.Zero(t, window[outReturnNak])

	// Steady state, node 1 known to be down.
	steady := func(key string, mandatory bool) tally {
		tl := tally{}
		for i := range 20 {
			out, err := pub.publish(ex, key, fmt.Sprintf("down-%s-%v-%d", key, mandatory, i), mandatory)
			require.NoError(t, err)
			tl[out]++
		}
		return tl
	}
	onlyPlain := steady("only.x", false)
	onlyMandatory := steady("only.x", true)
	both := steady("both.x", true)
	t.Logf("node 1 down, classic queue only: plain %v; mandatory %v. Classic + live quorum queue, mandatory: %v",
		onlyPlain, onlyMandatory, both)
	want := classicDownBehaviour(n2.Version().Name)
	assert.Equal(t, want.plain, onlyPlain, "RabbitMQ %s, without mandatory", n2.Version().Name)
	assert.Equal(t, want.mandatory, onlyMandatory, "RabbitMQ %s, with mandatory", n2.Version().Name)
	assert.Equal(t, want.both, both, "RabbitMQ %s, also routed to a live queue", n2.Version().Name)

	// The durablews Publisher reports what the broker lets it know.
	cfg := durablews.NewConfig(n2.AMQPURL(), durablews.Exchange{Name: ex, Passive: true})
	cfg.URLs = append(cfg.URLs, n3.AMQPURL())
	cfg.ConfirmTimeout = 10 * time.Second
	plain := newPublisher(t, cfg)
	cfg.Mandatory = true
	mand := newPublisher(t, cfg)
	for _, c := range []struct {
		what string
		pub  *durablews.Publisher
		key  string
		want error
	}{
		{"Mandatory off, only the dead queue", plain, "only.x", want.pubPlain},
		{"Mandatory on, only the dead queue", mand, "only.x", want.pubMandatory},
		{"Mandatory on, also a live queue", mand, "both.x", want.pubBoth},
	} {
		err := c.pub.Publish(ex, newMsg(c.key))
		t.Logf("Publisher, %s: %v", c.what, err)
		if c.want == nil {
			assert.NoError(t, err, c.what)
		} else {
			assert.ErrorIs(t, err, c.want, c.what)
		}
	}

	// AMQP on the survivors: the queue exists but cannot be used.
	ch, err := admin.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclarePassive(qc, true, false, false, false, nil)
	var amqpErr *amqp.Error
	require.ErrorAs(t, err, &amqpErr)
	t.Logf("passive declare on node 2: %v", err)
	assert.Equal(t, amqp.NotFound, amqpErr.Code)
	assert.Contains(t, amqpErr.Reason, want.declareReason)

	// A tab reconnecting to node 2 cannot consume its queue, neither through
	// /amq/queue/ nor by re-declaring it through /exchange/ with x-queue-name.
	for _, how := range []string{"/amq/queue/", "/exchange/ + x-queue-name"} {
		tab := dialNodeTab(t, n2)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var sub *stomptab.Subscription
		if how == "/amq/queue/" {
			sub, err = tab.SubscribeQueue(ctx, qc, 10)
		} else {
			sub, err = tab.Subscribe(ctx, stomptab.Sub{Exchange: ex, BindingKey: "only.#", QueueName: qc})
		}
		if err == nil {
			// The SUBSCRIBE may be accepted and the consumer cancelled.
			_, err = sub.Next(ctx)
		}
		cancel()
		t.Logf("tab on node 2, SUBSCRIBE %s: %v", how, err)
		assert.Error(t, err, "SUBSCRIBE %s to a queue whose node is down", how)
		tab.Drop()
	}

	// Node 1 back: the queue returns with what it held before the kill;
	// everything confirmed while it was down is gone.
	require.NoError(t, n1.StartAgain())
	waitRunning(t, c, n1, n2, n3)
	conn1 := dialNode(t, n1)
	defer conn1.Close()
	info, err := conn1.Channel()
	require.NoError(t, err)
	q, err := info.QueueDeclarePassive(qc, true, false, false, false, nil)
	require.NoError(t, err)
	// A tab on node 2 now consumes it through /amq/queue/.
	tab := dialNodeTab(t, n2)
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := tab.SubscribeQueue(ctx, qc, 100)
	require.NoError(t, err)
	got, err := stomptab.ReceiveN(ctx, sub, q.Messages, true)
	require.NoError(t, err, "after the restart a tab on another node reads the queue")
	seen := map[string]bool{}
	for _, id := range got.IDs() {
		seen[id] = true
	}
	missing, downSeen := 0, 0
	for id := range stored {
		if !seen[id] {
			missing++
		}
	}
	for id := range seen {
		if strings.HasPrefix(id, "down-") {
			downSeen++
		}
	}
	nackedStored := 0
	for _, id := range nacked {
		if seen[id] {
			nackedStored++
		}
	}
	t.Logf("after node 1 restarted: classic queue holds %d messages; %d of %d acked without a return are missing; %d of %d nacked are there anyway; %d published while it was down present",
		q.Messages, missing, len(stored), nackedStored, len(nacked), downSeen)
	assert.Zero(t, missing, "acked without a return (before the kill, or in the window before the cluster noticed) survives the kill")
	assert.Zero(t, downSeen, "confirmed while the queue's node was down: dropped")
}
