package main

// The cost of quorum tab queues on a cluster, side by side with classic ones
// (go run ./cmd/durablews-bench -cluster): a private 3-node cluster
// (internal/testbroker) is started, and for each queue type the bench
// measures
//
//   - tab queue declares + binds per second (what creating a tab session
//     costs the broker), sequential on one channel through node 1;
//   - broker memory per idle tab queue: the growth of erlang:memory(total)
//     summed over the three nodes (after a full GC) divided by the number of
//     queues;
//   - confirmed msg/s with the durablews Publisher (Config.URLs over the three
//     nodes, 4 goroutines x batches of 10) to K = 1, 10, 100 tab queues bound
//     to every message.
//
// Every queue is declared through node 1: classic queues live there
// (client-local placement), quorum queues have their leader there and
// followers on the other two nodes.

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/testbroker"
)

// clusterCostOptions size the cluster cost run.
type clusterCostOptions struct {
	Declares int           // queues declared for the declare rate and the memory figure
	Ks       []int         // tab-queue counts of the throughput rows
	Window   time.Duration // publishing time per throughput row
	Progress io.Writer
}

func defaultClusterCost(short bool) clusterCostOptions {
	if short {
		return clusterCostOptions{Declares: 20, Ks: []int{1, 10}, Window: time.Second}
	}
	return clusterCostOptions{Declares: 500, Ks: []int{1, 10, 100}, Window: 5 * time.Second}
}

// queueKind is one column of the table.
type queueKind struct {
	name string
	args func() amqp.Table
}

// tabQueueArgs are the arguments tabsession declares a tab queue with
// (default QueueMaxLength), so both columns measure the same queue and
// differ only in x-queue-type.
func tabQueueArgs() amqp.Table {
	return amqp.Table{"x-expires": int64(3600000), "x-max-length": int64(10000),
		"x-overflow": "drop-head", "x-single-active-consumer": true}
}

var queueKinds = []queueKind{
	{"classic", tabQueueArgs},
	{"quorum", func() amqp.Table {
		a := tabQueueArgs()
		a["x-queue-type"] = "quorum"
		return a
	}},
}

// costRow is one line of the table: a value per queue kind.
type costRow struct {
	what   string
	unit   string
	values []float64
}

func runClusterCost(ctx context.Context, o clusterCostOptions, out io.Writer, markdown bool) error {
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	c, err := testbroker.NewCluster(testbroker.ClusterOptions{Node: testbroker.Options{
		Logf: func(f string, a ...any) { fmt.Fprintf(progress, f+"\n", a...) },
	}})
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(progress, "cluster-cost: 3-node cluster booted in %v\n", c.BootTime().Round(time.Millisecond))

	conn, err := amqp.Dial(c.Node(0).AMQPURL())
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	const ex = "bench-cluster"
	if err := ch.ExchangeDeclare(ex, "topic", true, false, false, false, nil); err != nil {
		return err
	}

	rows := []*costRow{
		{what: "tab queue declare + bind", unit: "/s"},
		{what: "broker memory per idle tab queue (3 nodes)", unit: "KiB"},
	}
	for _, k := range o.Ks {
		rows = append(rows, &costRow{what: fmt.Sprintf("confirmed msg/s to K = %d tab queues", k), unit: "msg/s"})
	}
	for _, kind := range queueKinds {
		fmt.Fprintf(progress, "cluster-cost: %s\n", kind.name)
		memBefore, err := clusterMemory(ctx, c)
		if err != nil {
			return err
		}
		start := time.Now()
		qs, err := declareQueues(ch, ex, kind, o.Declares)
		if err != nil {
			return err
		}
		rate := float64(len(qs)) / time.Since(start).Seconds()
		memAfter, err := clusterMemory(ctx, c)
		if err != nil {
			return err
		}
		rows[0].values = append(rows[0].values, rate)
		rows[1].values = append(rows[1].values, float64(memAfter-memBefore)/float64(len(qs))/1024)
		if err := deleteQueues(ch, qs); err != nil {
			return err
		}

		for i, k := range o.Ks {
			qs, err := declareQueues(ch, ex, kind, k)
			if err != nil {
				return err
			}
			mps, err := confirmedRate(ctx, c.AMQPURLs(), ex, o.Window)
			if err != nil {
				return fmt.Errorf("%s K=%d: %w", kind.name, k, err)
			}
			rows[2+i].values = append(rows[2+i].values, mps)
			if err := deleteQueues(ch, qs); err != nil {
				return err
			}
		}
	}
	printCostTable(out, rows, markdown)
	return nil
}

func declareQueues(ch *amqp.Channel, ex string, kind queueKind, n int) ([]string, error) {
	qs := make([]string, 0, n)
	for i := range n {
		q := fmt.Sprintf("tab-bench%s-%s-%d", watermill.NewShortUUID()[:8], kind.name, i)
		if _, err := ch.QueueDeclare(q, true, false, false, false, kind.args()); err != nil {
			return qs, fmt.Errorf("declare %s queue %d of %d: %w", kind.name, i+1, n, err)
		}
		if err := ch.QueueBind(q, "bench.#", ex, false, nil); err != nil {
			return qs, err
		}
		qs = append(qs, q)
	}
	return qs, nil
}

func deleteQueues(ch *amqp.Channel, qs []string) error {
	for _, q := range qs {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			return err
		}
	}
	return nil
}

// clusterMemory is erlang:memory(total) summed over the nodes, each after a
// full garbage collection of its processes.
func clusterMemory(ctx context.Context, c *testbroker.Cluster) (int64, error) {
	var total int64
	for _, n := range c.Nodes() {
		out, err := n.CLIContext(ctx, "rabbitmqctl", "eval",
			"[erlang:garbage_collect(P) || P <- erlang:processes()], erlang:memory(total).")
		if err != nil {
			return 0, err
		}
		v, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("memory of %s: %q: %w", n.Name(), out, err)
		}
		total += v
	}
	return total, nil
}

// confirmedRate publishes with the durablews Publisher over the cluster's
// URLs from 4 goroutines in batches of 10 for window and returns confirmed
// messages per second.
func confirmedRate(ctx context.Context, urls []string, ex string, window time.Duration) (float64, error) {
	cfg := durablews.NewConfig(urls[0], durablews.Exchange{Name: ex, Passive: true})
	cfg.URLs = urls
	pub, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	if err != nil {
		return 0, err
	}
	defer pub.Close()
	var (
		confirmed atomic.Int64
		firstErr  error
		once      sync.Once
		wg        sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	start := time.Now()
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				batch := make([]*message.Message, 10)
				for i := range batch {
					batch[i] = message.NewMessage(watermill.NewUUID(), []byte(`{"bench":"cluster"}`))
					batch[i].Metadata.Set(durablews.RoutingKeyMetadataKey, fmt.Sprintf("bench.%d", g))
				}
				if err := pub.Publish(ex, batch...); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				confirmed.Add(int64(len(batch)))
			}
		}()
	}
	wg.Wait()
	return float64(confirmed.Load()) / time.Since(start).Seconds(), firstErr
}

func printCostTable(w io.Writer, rows []*costRow, markdown bool) {
	header := []string{"3-node cluster", "classic", "quorum", "quorum / classic"}
	lines := [][]string{header}
	for _, r := range rows {
		cells := []string{r.what}
		for _, v := range r.values {
			cells = append(cells, fmt.Sprintf("%.0f %s", v, r.unit))
		}
		if len(r.values) == 2 && r.values[0] != 0 {
			cells = append(cells, fmt.Sprintf("%.2fx", r.values[1]/r.values[0]))
		}
		lines = append(lines, cells)
	}
	if markdown {
		for i, l := range lines {
			fmt.Fprintf(w, "| %s |\n", strings.Join(l, " | "))
			if i == 0 {
				fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(l)))
			}
		}
		return
	}
	for _, l := range lines {
		fmt.Fprintf(w, "%-45s", l[0])
		for _, c := range l[1:] {
			fmt.Fprintf(w, " %16s", c)
		}
		fmt.Fprintln(w)
	}
}
