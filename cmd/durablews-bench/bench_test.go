package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
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
			if s.Kind == kindE2E && (m.P50 <= 0 || m.P99 < m.P50) {
				t.Errorf("%s/%s: p50 %v p99 %v; want 0 < p50 <= p99", s.Name, c.ID, m.P50, m.P99)
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
	left, err := Leftovers(conn, rep.Exchange, rep.QueuesCreated)
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
