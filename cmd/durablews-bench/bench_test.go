package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokerversion"
)

func amqpURL() string { return DefaultOptions().AMQPURL }

// TestBenchShort runs the bench in its CI mode (-short: every scenario and
// contender, one run, a handful of messages) against the shared broker
// and checks only that it works: every contender of every scenario
// produced a number, nothing errored, every ratio line has both sides, and
// nothing was left on the broker. It asserts no timing at all: on a
// shared CI machine the numbers mean nothing.
func TestBenchShort(t *testing.T) {
	o := DefaultOptions()
	o.ApplyShort()
	var progress bytes.Buffer
	o.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	rep, err := Run(ctx, o)
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("Run: %v (the bench needs RabbitMQ with Web-STOMP: `make broker`)", err)
	}
	for _, e := range rep.Errors() {
		t.Errorf("error: %v", e)
	}

	want := scenarios(&o)
	if len(rep.Scenarios) != len(want) {
		t.Fatalf("%d scenarios ran, want %d", len(rep.Scenarios), len(want))
	}
	for i, s := range rep.Scenarios {
		def := want[i]
		n := len(def.contenders) + len(def.e2e)
		if len(s.Contenders) != n {
			t.Errorf("%s: %d contenders, want %d", s.Name, len(s.Contenders), n)
		}
		for _, c := range s.Contenders {
			m, ok := c.Median()
			if !ok {
				t.Errorf("%s/%s: no number", s.Name, c.ID)
				continue
			}
			if !(m.Rate > 0) || m.Msgs <= 0 {
				t.Errorf("%s/%s: rate %v over %d messages; want a positive number", s.Name, c.ID, m.Rate, m.Msgs)
			}
			if (s.Kind == kindE2E || s.Kind == kindReceipts) && (m.P50 <= 0 || m.P99 < m.P50) {
				t.Errorf("%s/%s: p50 %v p99 %v; want 0 < p50 <= p99", s.Name, c.ID, m.P50, m.P99)
			}
			if c.ID == receiptsContenderID(true) && (m.RP50 <= 0 || m.RP99 < m.RP50 || m.Receipts <= 0 || m.ReceiptsMissing != 0) {
				t.Errorf("%s/%s: publish → receipt p50 %v p99 %v over %d receipts, %d missing; want 0 < p50 <= p99, none missing", s.Name, c.ID, m.RP50, m.RP99, m.Receipts, m.ReceiptsMissing)
			}
		}
		if len(s.Ratios) != len(def.targets) {
			t.Errorf("%s: %d ratio lines, want %d", s.Name, len(s.Ratios), len(def.targets))
		}
		for _, r := range s.Ratios {
			if r.Missing || !(r.Value > 0) {
				t.Errorf("%s: ratio %q has no value", s.Name, r.Label)
			}
		}
	}

	// The printed report has a line per contender and a ratio line per
	// target, in both formats.
	for _, md := range []bool{false, true} {
		var out bytes.Buffer
		rep.Print(&out, md)
		text := out.String()
		if got := strings.Count(text, "ratio: "); got != countTargets(want) {
			t.Errorf("markdown=%v: %d ratio lines, want %d:\n%s", md, got, countTargets(want), text)
		}
		if strings.Contains(text, "ERROR") || strings.Contains(text, "MISSING") {
			t.Errorf("markdown=%v: report shows an error:\n%s", md, text)
		}
	}

	// Nothing left behind on the shared broker.
	conn, err := amqp.Dial(o.AMQPURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	left, err := Leftovers(conn, append([]string{rep.Exchange}, rep.ExchangesCreated...), rep.QueuesCreated)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("left on the broker: %v", left)
	}
	if len(rep.QueuesCreated) == 0 {
		t.Error("no queue recorded as created; the leak check checked nothing")
	}
}

func countTargets(defs []scenarioDef) int {
	n := 0
	for _, d := range defs {
		n += len(d.targets)
	}
	return n
}

func TestPayloadAndE2EBody(t *testing.T) {
	for _, n := range []int{16, 256, 1000} {
		if got := len(makePayload(n)); got != n {
			t.Errorf("makePayload(%d) is %d bytes", n, got)
		}
	}
	sched := time.Unix(1700000000, 123456789)
	b := e2eBody(4711, sched, 256)
	if len(b) != 256 {
		t.Errorf("e2eBody is %d bytes, want 256", len(b))
	}
	i, ts, ok := parseE2EBody(b)
	if !ok || i != 4711 || ts != sched.UnixNano() {
		t.Errorf("parseE2EBody = %d, %d, %v", i, ts, ok)
	}
	if _, _, ok := parseE2EBody([]byte(`{"pad":"x"}`)); ok {
		t.Error("parseE2EBody accepted a body without fields")
	}
}

func TestRatioVerdicts(t *testing.T) {
	mk := func(id string, rate float64, p99 time.Duration) *ContenderResult {
		return &ContenderResult{ID: id, Samples: []sample{{Rate: rate, P99: p99, Msgs: 1}}}
	}
	sr := &ScenarioResult{Contenders: []*ContenderResult{mk("a", 900, 3*time.Millisecond), mk("b", 1000, 2*time.Millisecond)}}
	def := scenarioDef{name: "x", targets: []targetDef{
		{num: "a", den: "b", metric: "rate", min: 0.85},
		{num: "a", den: "b", metric: "rate", min: 1},
		{num: "a", den: "b", metric: "p99", min: 1.5},
		{num: "a", den: "b", metric: "p99", min: 1.4},
		{num: "a", den: "missing", metric: "rate", min: 1},
	}}
	got := ratios(def, sr)
	wantPass := []bool{true, false, true, false, false}
	for i, r := range got {
		if r.Pass != wantPass[i] {
			t.Errorf("target %d: pass=%v, want %v (%s)", i, r.Pass, wantPass[i], r)
		}
	}
	if !got[4].Missing {
		t.Error("a missing contender must give a MISSING ratio")
	}
}

// TestCheckFDs: a connected-K measurement that would run the broker out of
// file descriptors is refused before any tab connects, with what to do.
func TestCheckFDs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/nodes/rabbit@x" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `{"fd_used":200,"fd_total":1024}`)
	}))
	defer srv.Close()
	m := &brokerMemory{base: srv.URL, node: "rabbit@x"}
	ctx := context.Background()
	for _, c := range []struct {
		tabs   int
		stream bool
		ok     bool
	}{{100, false, true}, {700, false, true}, {1000, false, false}, {200, true, true}, {300, true, false}} {
		err := m.checkFDs(ctx, c.tabs, c.stream)
		if c.ok {
			require.NoError(t, err, "%d tabs, stream %v", c.tabs, c.stream)
			continue
		}
		require.Error(t, err, "%d tabs, stream %v", c.tabs, c.stream)
		require.Contains(t, err.Error(), "200 of 1024 in use")
		require.Contains(t, err.Error(), "-connected-k")
	}
}

// TestBenchVersionsShort runs the -versions mode in its smoke form
// (-short) on the shared node of the RabbitMQ version under test (the one
// `make test` / `make matrix-one` started; DURABLEWS_RABBITMQ) and checks
// only that it works: every cell of the table holds a number, in both
// formats, nothing errored and nothing was left on the broker. No timing
// is asserted. A node that does not answer fails the test with the command
// that starts it. (`go run ./cmd/durablews-bench -versions` runs every
// version side by side; RESULTS.md has a full run.)
func TestBenchVersionsShort(t *testing.T) {
	sel, err := brokerversion.Selected()
	require.NoError(t, err)
	conn, err := amqp.Dial(sel.AMQPURL())
	require.NoError(t, err, "RabbitMQ %s's shared node does not answer: bash scripts/rabbitmq-versions.sh start %s (or make broker RABBITMQ=%s)", sel.Name, sel.Name, sel.Name)
	_ = conn.Close()
	names := []string{sel.Name}

	o := DefaultOptions()
	o.ApplyShort()
	o.SkipAwayMemory = true // as -versions -short does
	var progress bytes.Buffer
	o.Progress = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := RunVersions(ctx, o, names)
	t.Logf("progress:\n%s", progress.String())
	require.NoError(t, err)
	for _, e := range rep.Errors() {
		t.Errorf("error: %v", e)
	}
	require.Len(t, rep.Versions, len(names))

	for _, md := range []bool{false, true} {
		tab := rep.Table(md)
		require.Len(t, tab.head, 1+len(names), "a column per version")
		for i, v := range rep.Versions {
			require.Contains(t, tab.head[1+i], "RabbitMQ", "column %d is headed by the broker's version", i)
			require.NotNil(t, v.Report, v.Name)
		}
		// 12 publisher rows, 3 per K and one across K, 9 receipts rows,
		// the machine's load.
		want := 12 + 3*len(o.StreamSubscribers) + 1 + 9 + 1
		require.Len(t, tab.rows, want, "rows")
		for _, row := range tab.rows {
			load := strings.HasPrefix(row[0], "other processes")
			for i, cell := range row[1:] {
				c := strings.NewReplacer(",", "", "*", "").Replace(cell)
				x, err := strconv.ParseFloat(c, 64)
				if err != nil || x < 0 || (!load && x == 0) {
					t.Errorf("markdown=%v: %q, %s: cell %q is not a positive number", md, row[0], tab.head[1+i], cell)
				}
			}
		}
		for _, label := range []string{"durablews ÷ raw, one at a time", "durablews ÷ raw, pipelined", "streams ÷ queues at K=10", "receipts on ÷ off, confirmed msg/s"} {
			found := false
			for _, row := range tab.rows {
				found = found || strings.HasPrefix(row[0], label)
			}
			require.True(t, found, "a row %q", label)
		}
		var out bytes.Buffer
		rep.Print(&out, md)
		if s := out.String(); strings.Contains(s, "ERROR") || strings.Contains(s, "error(s)") {
			t.Errorf("markdown=%v: the report shows an error:\n%s", md, s)
		}
		t.Logf("markdown=%v:\n%s", md, out.String())
	}

	// Nothing left behind on any broker.
	for _, v := range rep.Versions {
		o, err := versionOptions(o, v.Name)
		require.NoError(t, err)
		conn, err := amqp.Dial(o.AMQPURL)
		require.NoError(t, err)
		left, err := Leftovers(conn, append([]string{v.Report.Exchange}, v.Report.ExchangesCreated...), v.Report.QueuesCreated)
		_ = conn.Close()
		require.NoError(t, err)
		require.Empty(t, left, "RabbitMQ %s: left on the broker", v.Name)
		require.NotEmpty(t, v.Report.QueuesCreated, "RabbitMQ %s: no queue recorded as created; the leak check checked nothing", v.Name)
	}
}

// TestVersionsFlag: -versions alone means every version, -versions=LIST
// and -versions LIST (other flags after it) name some; unknown names and
// the flags the mode sets itself are refused.
func TestVersionsFlag(t *testing.T) {
	all, err := parseVersions("")
	require.NoError(t, err)
	require.Equal(t, brokerversion.Names(), all)
	got, err := parseVersions("4.3, 3.10")
	require.NoError(t, err)
	require.Equal(t, []string{"4.3", "3.10"}, got)
	for _, bad := range []string{"3.9", "4.0,4.0", "4.0,"} {
		_, err := parseVersions(bad)
		require.Error(t, err, bad)
	}
	require.Equal(t, 2, run([]string{"-versions", "3.9", "-short"}))
	require.Equal(t, 2, run([]string{"-versions=4.0", "-amqp", "amqp://x/"}))
	require.Equal(t, 2, run([]string{"-versions", "4.0", "stray"}))

	// -scenarios narrows -versions: only those scenarios run, and the
	// table has only their rows (and the machine's load).
	o := DefaultOptions()
	o.Scenarios = regexp.MustCompile("receipts")
	vo, err := versionOptions(o, "4.0")
	require.NoError(t, err)
	require.Equal(t, o.Scenarios, vo.Only)
	rows := (&VersionsReport{Options: o}).rows()
	require.Len(t, rows, 9+1)
	for _, row := range rows[:9] {
		require.Contains(t, row.label, "receipts")
	}
}
