//go:build sizing

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/stomptab"
	"github.com/durablews/durablews/internal/testbroker"
)

// TestSizing_TabQueueMemory measures, on a private node configured by
// setup, what tab queues cost the broker:
//
//  1. N idle tab queues as browsers leave them (durable, x-expires, one
//     binding, no consumer, no message);
//  2. the same queues holding M persistent 256-byte messages each;
//  3. K connected tabs (Web-STOMP connection + durable subscription).
//
// It reads memory_breakdown (rabbitmq-diagnostics), the management API's
// per-queue memory and the beam's RSS before and after each step. It takes
// a few minutes, so it is a measurement behind the "sizing" build tag, not
// part of the suite (make sizing):
//
//	go test -tags sizing -run TestSizing -v -timeout 20m ./cmd/durablews/
//
// DURABLEWS_SIZING_QUEUES (default 1000), _MESSAGES (default 10) and _TABS
// (default 100) change N, M and K. The numbers in OPERATIONS.md come from it.
func TestSizing_TabQueueMemory(t *testing.T) {
	nQueues := envInt(t, "DURABLEWS_SIZING_QUEUES", 1000)
	nMsgs := envInt(t, "DURABLEWS_SIZING_MESSAGES", 10)
	nTabs := envInt(t, "DURABLEWS_SIZING_TABS", 100)
	const settle = 30 * time.Second // idle classic queue processes hibernate within ~10 s

	node := testbroker.Start(t, testbroker.Options{})
	env := nodeEnv(node)
	require.Equal(t, exitOK, cli(t, env, "setup").code)
	mc := mgmtClient(t, node)

	snap := func(label string) memSample {
		time.Sleep(settle)
		s := sampleMemory(t, node)
		s.label = label
		if qs, err := listTabQueues(t.Context(), mc, 30*time.Second, "/", "^tab-"); err == nil {
			s.queues = len(qs)
			for _, q := range qs {
				s.queueProcBytes += q.Memory
			}
		}
		t.Logf("%s: %s", label, s)
		return s
	}

	base := snap("baseline (setup done, no tab queues)")

	conn, err := amqp.Dial(node.AMQPURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	start := time.Now()
	names := make([]string, nQueues)
	for i := range names {
		names[i] = stomptab.RandomQueueName("events")
		_, err := ch.QueueDeclare(names[i], true, false, false, false, amqp.Table{"x-expires": int32(3600000)})
		require.NoError(t, err)
		require.NoError(t, ch.QueueBind(names[i], fmt.Sprintf("user.%d.#", i), "events", false, nil))
	}
	t.Logf("declared and bound %d queues in %s", nQueues, time.Since(start).Round(time.Millisecond))
	idle := snap(fmt.Sprintf("%d idle tab queues", nQueues))

	require.NoError(t, ch.Confirm(false))
	payload := []byte(strings.Repeat("x", 256))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, nQueues*nMsgs))
	for i := range names {
		for range nMsgs {
			require.NoError(t, ch.PublishWithContext(t.Context(), "events", fmt.Sprintf("user.%d.msg", i), false, false,
				amqp.Publishing{DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: payload}))
		}
	}
	for range nQueues * nMsgs {
		c := <-confirms
		require.True(t, c.Ack)
	}
	withMsgs := snap(fmt.Sprintf("%d tab queues with %d x 256 B persistent messages each", nQueues, nMsgs))

	var tabs []*stomptab.Tab
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	for i := range nTabs {
		tab, err := stomptab.Dial(ctx, stomptab.Options{URL: node.WebSTOMPURL()})
		require.NoError(t, err)
		tabs = append(tabs, tab)
		_, err = tab.Subscribe(ctx, stomptab.Sub{Exchange: "events", BindingKey: fmt.Sprintf("tab.%d.#", i), QueueName: stomptab.RandomQueueName("events")})
		require.NoError(t, err)
	}
	t.Cleanup(func() {
		for _, tab := range tabs {
			_ = tab.Close()
		}
	})
	connected := snap(fmt.Sprintf("plus %d connected tabs (Web-STOMP session + own queue, idle)", nTabs))

	per := func(a, b memSample, n int) string {
		d := func(keys ...string) string {
			var sum int64
			for _, k := range keys {
				sum += b.get(k) - a.get(k)
			}
			return perItem(sum, n)
		}
		return fmt.Sprintf("RSS %s, breakdown total %s = queue_procs %s + mnesia/other_ets %s + mgmt_db/metrics %s + plugins %s + binary %s + "+
			"connection_* %s + other_proc %s + the rest (allocator slack etc.); queue 'memory' (mgmt API) %s",
			perItem(b.rss-a.rss, n), perItem(b.total-a.total, n), d("queue_procs"), d("mnesia", "other_ets"), d("mgmt_db", "metrics"),
			d("plugins"), d("binary"), d("connection_readers", "connection_writers", "connection_channels", "connection_other"),
			d("other_proc"), perItem(b.queueProcBytes-a.queueProcBytes, n))
	}
	t.Logf("RESULT per idle tab queue (%d): %s", nQueues, per(base, idle, nQueues))
	t.Logf("RESULT per waiting message (%d x %d B): %s", nQueues*nMsgs, len(payload), per(idle, withMsgs, nQueues*nMsgs))
	t.Logf("RESULT per connected tab (%d): %s", nTabs, per(withMsgs, connected, nTabs))
	for _, s := range []memSample{base, idle, withMsgs, connected} {
		t.Logf("BREAKDOWN %s:\n%s", s.label, s.breakdownTable())
	}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, name)
	return n
}

type memSample struct {
	label          string
	breakdown      map[string]int64 // memory_breakdown categories, bytes
	total          int64            // sum of the categories = erlang:memory(total) + allocated_unused + reserved_unallocated
	rss            int64            // beam.smp VmRSS
	queues         int
	queueProcBytes int64 // sum of the management API's per-queue "memory"
}

func (s memSample) get(k string) int64 { return s.breakdown[k] }

func (s memSample) String() string {
	return fmt.Sprintf("breakdown total %.1f MiB (queue_procs %.1f MiB), RSS %.1f MiB, %d tab queues using %.1f MiB of process memory",
		mib(s.total), mib(s.get("queue_procs")), mib(s.rss), s.queues, mib(s.queueProcBytes))
}

func (s memSample) breakdownTable() string {
	keys := make([]string, 0, len(s.breakdown))
	for k := range s.breakdown {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return s.breakdown[keys[i]] > s.breakdown[keys[j]] })
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-28s %10.2f MiB\n", k, mib(s.breakdown[k]))
	}
	return b.String()
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func perItem(delta int64, n int) string {
	if n == 0 {
		return "n/a"
	}
	per := float64(delta) / float64(n)
	if per >= 10240 || per <= -10240 {
		return fmt.Sprintf("%.1f KiB", per/1024)
	}
	return fmt.Sprintf("%.0f B", per)
}

// sampleMemory reads rabbitmq-diagnostics memory_breakdown and the beam RSS.
func sampleMemory(t *testing.T, node *testbroker.Node) memSample {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out, err := node.CLIContext(ctx, "rabbitmq-diagnostics", "memory_breakdown", "--unit", "bytes", "--formatter", "json", "-q")
	require.NoError(t, err)
	if i := strings.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &raw), out)
	s := memSample{breakdown: map[string]int64{}}
	for k, v := range raw {
		var n float64
		switch x := v.(type) {
		case float64:
			n = x
		case map[string]any: // {"bytes": ..., "percentage": ...}
			n, _ = x["bytes"].(float64)
		}
		if k == "total" {
			continue
		}
		s.breakdown[k] = int64(n)
		s.total += int64(n)
	}
	if pid := node.BeamPID(); pid > 0 {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			for _, line := range strings.Split(string(st), "\n") {
				if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
					kb, _ := strconv.ParseInt(f[1], 10, 64)
					s.rss = kb * 1024
				}
			}
		}
	}
	return s
}
