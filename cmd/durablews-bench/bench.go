package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/brokerversion"
)

// Options configure a bench run. DefaultOptions is the full run (about
// ten minutes on a 2-core machine); Short is the CI smoke run.
type Options struct {
	AMQPURL string
	WSURL   string

	Short   bool
	Runs    int           // repetitions of every measurement; the median is reported
	Warmup  time.Duration // publishing before the measured window opens
	Window  time.Duration // measured window (at least MinMsgs confirmed)
	MinMsgs int           // the window stays open until this many were confirmed
	MaxWait time.Duration // a window that cannot reach MinMsgs by then is an error
	Settle  time.Duration // pause after purging, before the next measurement

	// QuietWait: before each measurement, wait up to this long until the
	// CPU used by other processes (not the bench, not the broker) stays
	// below QuietCores, so that other work on a shared machine skews the
	// numbers less. 0 disables the check. The "other CPU" column shows
	// what was left during each window.
	QuietWait   time.Duration
	QuietCores  float64
	QuietBudget time.Duration // total waiting for quiet over the whole run
	Retries     int           // repeat a measurement whose window saw other processes use > QuietCores
	// BrokerIdleCores/BrokerSettle: before a measurement, wait up to
	// BrokerSettle for the broker to use less than BrokerIdleCores.
	BrokerIdleCores float64
	BrokerSettle    time.Duration
	quietSpent      time.Duration

	PayloadBytes int
	FanoutQueues []int
	// StreamSubscribers are the away-subscriber counts K of the streams
	// scenario (ascending; the first is its anchor).
	StreamSubscribers []int
	// ConnectedTabs are the tab counts of the connected-K scenarios (tab
	// queues vs one stream, Web-STOMP tabs acking).
	ConnectedTabs []int
	// SkipAwayMemory leaves out the streams scenario's broker memory per
	// away subscriber (about half a minute of readings).
	SkipAwayMemory bool

	// MgmtURL is the broker's management API ("" = the AMQP URL's host,
	// port 15672; credentials always from the AMQP URL).
	MgmtURL string

	E2ERate int // offered msg/s in the end-to-end scenarios
	// SaturationRate is the offered load, in deliveries/s over all tabs,
	// of the connected-K-sat scenarios: above what the broker can deliver,
	// so that delivered/s is its ceiling.
	SaturationRate int
	E2EWarmup      time.Duration // first messages not counted in the latencies
	E2EWindow      time.Duration // measured part
	E2EDrain       time.Duration // how long to wait for tabs to catch up after the last publish
	// E2ELatencyRuns: runs of the 1-tab latency scenario (at least Runs).
	E2ELatencyRuns int
	// ReceiptsTabs is K of the receipts-K tabs scenario; ReceiptsRate its
	// offered msg/s (0: E2ERate deliveries/s over the K tabs).
	ReceiptsTabs int
	ReceiptsRate int

	Scenarios  *regexp.Regexp // nil = all
	Only       *regexp.Regexp // -versions -scenarios: of Scenarios, only these (nil = all)
	Contenders *regexp.Regexp // nil = all

	Progress io.Writer // one line per measurement; nil = silent
}

// DefaultOptions is the full run.
func DefaultOptions() Options {
	return Options{
		AMQPURL:     brokerversion.SharedAMQPURL(),
		WSURL:       brokerversion.SharedWebSTOMPURL(),
		MgmtURL:     brokerversion.SharedManagementURL(),
		Runs:        3,
		Warmup:      500 * time.Millisecond,
		Window:      2 * time.Second,
		MinMsgs:     40,
		MaxWait:     60 * time.Second,
		Settle:      200 * time.Millisecond,
		QuietWait:   2 * time.Minute,
		QuietCores:  0.25,
		QuietBudget: 10 * time.Minute,
		Retries:     2,

		BrokerIdleCores:   0.1,
		BrokerSettle:      20 * time.Second,
		PayloadBytes:      256,
		FanoutQueues:      []int{1, 10, 100, 1000},
		StreamSubscribers: []int{1, 10, 100, 1000},
		ConnectedTabs:     []int{10, 100, 1000},
		E2ERate:           1000,
		SaturationRate:    20000,
		E2EWarmup:         time.Second,
		E2EWindow:         5 * time.Second,
		E2EDrain:          20 * time.Second,

		E2ELatencyRuns: 5,
		ReceiptsTabs:   10,
	}
}

// ApplyShort turns o into the CI smoke run: every scenario, every
// contender, one run, a handful of messages each. It proves the bench
// works; its numbers mean nothing.
func (o *Options) ApplyShort() {
	o.Short = true
	o.Runs = 1
	o.Warmup = 20 * time.Millisecond
	o.Window = 50 * time.Millisecond
	o.MinMsgs = 3
	o.Settle = 0
	o.QuietWait = 0
	o.Retries = 0
	o.E2ERate = 200
	o.SaturationRate = 1000
	o.E2EWarmup = 50 * time.Millisecond
	o.E2EWindow = 150 * time.Millisecond
	o.E2EDrain = 20 * time.Second
	o.E2ELatencyRuns = 1
	o.StreamSubscribers = []int{1, 10}
	o.ConnectedTabs = []int{2}
	o.ReceiptsTabs = 2
}

type kind int

const (
	kindThroughput kind = iota
	kindFanout
	kindE2E
	kindStreams
	kindReceipts // e2e with delivery receipts off vs on (receipts.go)
)

type targetDef struct {
	num, den string  // contender ids
	metric   string  // "rate" (higher is better) or "p99" (lower is better)
	min      float64 // rate: num/den >= min; p99: num/den <= min; 0 = informational
	label    string
}

type scenarioDef struct {
	name, title string
	kind        kind
	queues      int  // bound queues (throughput, fan-out)
	tabQueues   bool // declared like a browser tab's SUBSCRIBE does
	tabs        int  // e2e, receipts: connected tabs
	rate        int  // e2e: offered msg/s instead of Options.E2ERate
	saturate    bool // e2e: offered above capacity; rate over all deliveries, broker memory per tab
	contenders  []contender
	e2e         []e2eContender
	anchor      string // contender id the ×anchor column divides by
	targets     []targetDef
}

func scenarios(o *Options) []scenarioDef {
	var out []scenarioDef
	for _, q := range []int{1, 10} {
		qs := plural(q, "queue")
		out = append(out, scenarioDef{
			name:  fmt.Sprintf("one-by-one-q%d", q),
			title: "one message per call from one goroutine, " + qs,
			kind:  kindThroughput, queues: q,
			contenders: []contender{
				durablewsContender(1, 1),
				wamqpContender(0, 1, 1),
				wamqpContender(1, 1, 1),
				rawContender(1),
			},
			anchor: "raw-inflight1",
			targets: []targetDef{
				{num: "durablews-1x1", den: "raw-inflight1", metric: "rate", min: 1, label: "durablews 1×1 vs raw wait-each-confirm"},
				{num: "durablews-1x1", den: "wamqp-pool0-1x1", metric: "rate", min: 2, label: "durablews 1×1 vs watermill-amqp default 1×1"},
			},
		}, scenarioDef{
			name:  fmt.Sprintf("pipelined-q%d", q),
			title: "batches of 100 from one goroutine, and 16 goroutines × 1 message, " + qs,
			kind:  kindThroughput, queues: q,
			contenders: []contender{
				durablewsContender(1, 100),
				durablewsContender(16, 1),
				wamqpContender(0, 1, 100),
				wamqpContender(1, 1, 100),
				wamqpContender(0, 16, 1),
				wamqpContender(16, 16, 1),
				rawBatchContender(100),
				rawContender(16),
				rawContender(256),
			},
			anchor: "raw-inflight256",
			targets: []targetDef{
				{num: "durablews-1x100", den: "raw-inflight256", metric: "rate", min: 0.85, label: "durablews batches of 100 vs raw pipelined 256"},
				{num: "durablews-1x100", den: "wamqp-pool16-16x1", metric: "rate", min: 2, label: "durablews batches of 100 vs watermill-amqp pool 16 × 16 goroutines"},
				{num: "durablews-16x1", den: "raw-inflight256", metric: "rate", min: 0.85, label: "durablews 16 goroutines vs raw pipelined 256"},
				{num: "durablews-16x1", den: "wamqp-pool16-16x1", metric: "rate", min: 2, label: "durablews 16 goroutines vs watermill-amqp pool 16 × 16 goroutines"},
				{num: "durablews-1x100", den: "raw-batch100", metric: "rate", label: "durablews batches of 100 vs raw amqp091-go in the same shape (100 in flight, wait all)"},
				{num: "raw-batch100", den: "raw-inflight256", metric: "rate", label: "raw batches of 100 vs raw 256 in flight (what the batch shape allows)"},
				{num: "durablews-16x1", den: "raw-inflight16", metric: "rate", label: "durablews 16 goroutines vs raw pipelined at the same depth (16 in flight)"},
				{num: "raw-inflight16", den: "raw-inflight256", metric: "rate", label: "raw 16 in flight vs raw 256 in flight (what 16 callers' depth allows)"},
			},
		})
	}
	for _, tabs := range []int{1, 10} {
		out = append(out, scenarioDef{
			name:  fmt.Sprintf("e2e-%dtab%s", tabs, map[bool]string{true: "", false: "s"}[tabs == 1]),
			title: fmt.Sprintf("publish → Web-STOMP tab client (acking), %d msg/s offered, %s", o.E2ERate, plural(tabs, "tab")),
			kind:  kindE2E, tabs: tabs,
			e2e:    []e2eContender{durablewsE2E(), rawE2E()},
			anchor: "raw-e2e",
			targets: []targetDef{{
				num: "durablews-e2e", den: "raw-e2e", metric: "p99",
				min:   map[bool]float64{true: 1.5, false: 0}[tabs == 1],
				label: "durablews end-to-end p99 vs raw amqp091-go path",
			}},
		})
	}
	for _, n := range o.FanoutQueues {
		out = append(out, scenarioDef{
			name:  fmt.Sprintf("fanout-%d", n),
			title: fmt.Sprintf("fan-out: every message to %s (durable tab queues, no tab attached)", plural(n, "tab queue")),
			kind:  kindFanout, queues: n, tabQueues: true,
			// The anchor is raw amqp091-go at the same depth as durablews'
			// 16 callers (16 in flight): past a few queues the broker is
			// CPU-bound and a deeper pipeline only adds latency (256 in
			// flight to 1,000 queues takes ~30 s to drain).
			contenders: []contender{
				durablewsContender(16, 1),
				wamqpContender(1, 1, 1),
				rawContender(16),
			},
			anchor: "raw-inflight16",
			targets: []targetDef{
				{num: "durablews-16x1", den: "raw-inflight16", metric: "rate", label: fmt.Sprintf("durablews 16 goroutines vs raw pipelined 16 in flight, %s", plural(n, "queue"))},
			},
		})
	}
	out = append(out, streamsScenario(o))
	out = append(out, connectedScenarios(o)...)
	return append(out, receiptsScenario(o))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// sample is one measurement of one contender.
type sample struct {
	Rate   float64 // confirmed msg/s (e2e: deliveries/s summed over tabs)
	Msgs   int64   // messages (e2e: deliveries) in the window
	Allocs float64 // heap allocations per message in the whole process
	Bytes  float64 // heap bytes per message
	CPU    cpuUse

	// e2e only
	Offered   float64 // published msg/s
	P50, P99  time.Duration
	Backlog   int // deliveries still missing when the drain timeout ran out
	Published int64
	TabKiB    float64 // saturation: broker memory per connected tab (node-wide growth ÷ tabs)

	// receipts only (Rate is publisher-confirmed msg/s there)
	Delivered       float64       // deliveries/s summed over tabs
	RP50, RP99      time.Duration // publish → receipt at the service's Tracker
	Receipts        int64         // receipts of the measured messages at the service
	ReceiptsMissing int           // receipts that had not arrived when the drain timeout ran out
}

// ContenderResult is every run of one contender in one scenario.
type ContenderResult struct {
	ID, Name, Shape string
	Samples         []sample
	Errs            []error
}

// Median is the per-field median over the runs.
func (c *ContenderResult) Median() (sample, bool) {
	if len(c.Samples) == 0 {
		return sample{}, false
	}
	med := func(f func(s sample) float64) float64 {
		v := make([]float64, len(c.Samples))
		for i, s := range c.Samples {
			v[i] = f(s)
		}
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return sample{
		Rate:    med(func(s sample) float64 { return s.Rate }),
		Msgs:    int64(med(func(s sample) float64 { return float64(s.Msgs) })),
		Allocs:  med(func(s sample) float64 { return s.Allocs }),
		Bytes:   med(func(s sample) float64 { return s.Bytes }),
		Offered: med(func(s sample) float64 { return s.Offered }),
		P50:     time.Duration(med(func(s sample) float64 { return float64(s.P50) })),
		P99:     time.Duration(med(func(s sample) float64 { return float64(s.P99) })),
		Backlog: int(med(func(s sample) float64 { return float64(s.Backlog) })),
		TabKiB:  med(func(s sample) float64 { return s.TabKiB }),

		Delivered:       med(func(s sample) float64 { return s.Delivered }),
		RP50:            time.Duration(med(func(s sample) float64 { return float64(s.RP50) })),
		RP99:            time.Duration(med(func(s sample) float64 { return float64(s.RP99) })),
		Receipts:        int64(med(func(s sample) float64 { return float64(s.Receipts) })),
		ReceiptsMissing: int(med(func(s sample) float64 { return float64(s.ReceiptsMissing) })),
		CPU: cpuUse{
			Client:      med(func(s sample) float64 { return s.CPU.Client }),
			Broker:      med(func(s sample) float64 { return s.CPU.Broker }),
			Other:       med(func(s sample) float64 { return s.CPU.Other }),
			BrokerKnown: c.Samples[0].CPU.BrokerKnown,
		},
	}, true
}

// RangeRate is the min and max Rate over the runs.
func (c *ContenderResult) RangeRate() (lo, hi float64) {
	for i, s := range c.Samples {
		if i == 0 || s.Rate < lo {
			lo = s.Rate
		}
		if i == 0 || s.Rate > hi {
			hi = s.Rate
		}
	}
	return lo, hi
}

// ScenarioResult is one scenario of the report.
type ScenarioResult struct {
	Name, Title string
	Kind        kind
	Queues      int
	Tabs        int
	Anchor      string
	Contenders  []*ContenderResult
	Ratios      []Ratio
	Notes       []string // extra result lines (streams: memory per away subscriber)
	// Away is the streams scenario's broker memory per away subscriber
	// (nil when not measured).
	Away *awayMemory
	Errs []error // setup/teardown errors
}

func (s *ScenarioResult) contender(id string) *ContenderResult {
	for _, c := range s.Contenders {
		if c.ID == id {
			return c
		}
	}
	return nil
}

// Ratio is one "ratio:" line.
type Ratio struct {
	Scenario, Label string
	Metric          string
	Num, Den        float64
	Value           float64
	Target          float64 // 0 = informational
	Queues          int     // fan-out: each message is written to this many queues
	Pass            bool
	Missing         bool // a side has no number
}

// Report is a whole bench run.
type Report struct {
	Started, Finished time.Time
	Machine           Machine
	Options           Options
	Exchange          string
	QueuesCreated     []string
	ExchangesCreated  []string // besides Exchange (the receipts scenario's)
	QuietWaited       time.Duration
	Scenarios         []*ScenarioResult
}

// Errors lists every error of the run.
func (r *Report) Errors() []error {
	var errs []error
	for _, s := range r.Scenarios {
		for _, e := range s.Errs {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name, e))
		}
		for _, c := range s.Contenders {
			for _, e := range c.Errs {
				errs = append(errs, fmt.Errorf("%s/%s: %w", s.Name, c.ID, e))
			}
		}
	}
	return errs
}

// Run runs every selected scenario against the broker and cleans up what
// it created, even when cancelled.
func Run(ctx context.Context, o Options) (rep *Report, err error) {
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	topo, err := newTopology(o.AMQPURL)
	if err != nil {
		return nil, err
	}
	rep = &Report{Started: time.Now(), Options: o, Exchange: topo.exchange}
	rep.Machine = describeMachine(topo.conn)
	meter := newCPUMeter(o.AMQPURL)
	defer func() {
		if cerr := topo.Cleanup(o.AMQPURL); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
		topo.mu.Lock()
		rep.QueuesCreated = slices.Clone(topo.created)
		rep.ExchangesCreated = slices.Clone(topo.createdExchanges)
		topo.mu.Unlock()
		rep.Finished = time.Now()
		rep.Options = o // with the time spent waiting for quiet
		rep.QuietWaited = o.quietSpent
	}()
	fmt.Fprintf(progress, "durablews-bench: exchange %s on %s; %s\n", topo.exchange, o.AMQPURL, rep.Machine.Summary())
	if meter.brokerPID == 0 {
		fmt.Fprintf(progress, "durablews-bench: broker process not found on this machine; broker CPU not reported\n")
	}

	payload := makePayload(o.PayloadBytes)
	for si, def := range scenarios(&o) {
		if o.Scenarios != nil && !o.Scenarios.MatchString(def.name) || o.Only != nil && !o.Only.MatchString(def.name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		sr := &ScenarioResult{Name: def.name, Title: def.title, Kind: def.kind, Queues: def.queues, Tabs: def.tabs, Anchor: def.anchor}
		rep.Scenarios = append(rep.Scenarios, sr)
		fmt.Fprintf(progress, "== %s: %s\n", def.name, def.title)
		prefix := fmt.Sprintf("s%d", si)
		e := &env{amqpURL: o.AMQPURL, exchange: topo.exchange, key: prefix + ".bench", payload: payload}
		switch def.kind {
		case kindThroughput, kindFanout:
			runThroughput(ctx, &o, topo, meter, def, sr, e, prefix, progress)
		case kindE2E, kindReceipts:
			runE2E(ctx, &o, topo, meter, def, sr, e, prefix, progress)
		case kindStreams:
			runStreams(ctx, &o, topo, meter, def, sr, e, prefix, progress)
		}
		sr.Ratios = ratios(def, sr)
	}
	return rep, ctx.Err()
}

func selected(o *Options, id string) bool {
	return o.Contenders == nil || o.Contenders.MatchString(id)
}

// rotate returns the indexes 0..n-1 starting at r, so that across runs
// every contender takes every position and drifting load is shared.
func rotate(n, r int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = (i + r) % n
	}
	return idx
}

func runThroughput(ctx context.Context, o *Options, topo *topology, meter *cpuMeter, def scenarioDef, sr *ScenarioResult, e *env, prefix string, progress io.Writer) {
	var cs []contender
	for _, c := range def.contenders {
		if selected(o, c.id) || c.id == def.anchor {
			cs = append(cs, c)
			sr.Contenders = append(sr.Contenders, &ContenderResult{ID: c.id, Name: c.name, Shape: c.shape})
		}
	}
	var queues []string
	if def.queues > 0 { // the streams scenario's contenders declare their own
		t0 := time.Now()
		var err error
		queues, err = topo.declareQueues(prefix, def.queues, prefix+".#", def.tabQueues)
		if err != nil {
			sr.Errs = append(sr.Errs, err)
			return
		}
		fmt.Fprintf(progress, "   declared %s in %v\n", plural(def.queues, "queue"), time.Since(t0).Round(time.Millisecond))
	}
	defer func() {
		if err := topo.deleteQueues(queues); err != nil {
			sr.Errs = append(sr.Errs, err)
		}
	}()
	for r := range o.Runs {
		for _, i := range rotate(len(cs), r) {
			if ctx.Err() != nil {
				return
			}
			var s sample
			var err error
			for attempt := 0; ; attempt++ {
				if err = topo.purge(queues); err != nil {
					sr.Errs = append(sr.Errs, err)
					return
				}
				if o.Settle > 0 {
					time.Sleep(o.Settle)
				}
				waitQuiet(ctx, o, meter, progress)
				// pprof labels: `go tool pprof -tagfocus contender=durablews-16x1`
				// isolates one contender in a -cpuprofile of a whole run
				// (goroutines it starts, amqp091-go's included, inherit them).
				pprof.Do(ctx, pprof.Labels("scenario", def.name, "contender", cs[i].id), func(ctx context.Context) {
					s, err = measure(ctx, o, meter, cs[i], e)
				})
				if !disturbed(o, err, s, attempt, cs[i].id, progress) {
					break
				}
			}
			cr := sr.Contenders[i]
			if err != nil {
				cr.Errs = append(cr.Errs, err)
				fmt.Fprintf(progress, "   run %d/%d %-20s ERROR %v\n", r+1, o.Runs, cs[i].id, err)
				continue
			}
			cr.Samples = append(cr.Samples, s)
			fmt.Fprintf(progress, "   run %d/%d %-20s %9.0f msg/s  %6.1f allocs/msg %7.0f B/msg  cpu client %.2f broker %.2f other %.2f (%d msgs)\n",
				r+1, o.Runs, cs[i].id, s.Rate, s.Allocs, s.Bytes, s.CPU.Client, s.CPU.Broker, s.CPU.Other, s.Msgs)
		}
	}
}

// measure connects the contender, lets it publish for the warm-up, then
// counts confirms over the window (without pausing the pipeline in
// between), then stops it and waits for its last confirms.
func measure(ctx context.Context, o *Options, meter *cpuMeter, c contender, e *env) (sample, error) {
	inst, err := c.start(ctx, e)
	if err != nil {
		return sample{}, fmt.Errorf("start: %w", err)
	}
	defer inst.close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var confirmed atomic.Int64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- inst.run(runCtx, stop, &confirmed) }()
	finish := func() error {
		close(stop)
		select {
		case err := <-done:
			return err
		case <-time.After(o.MaxWait):
			cancel()
			return fmt.Errorf("in-flight messages not confirmed %v after the window closed", o.MaxWait)
		}
	}

	// wait sleeps until d passed and at least n more confirms arrived.
	// It reports false when the run ended early (error) or MaxWait passed.
	wait := func(d time.Duration, from int64, n int64) (bool, error) {
		deadline := time.Now().Add(d)
		hard := time.Now().Add(o.MaxWait)
		for {
			now := time.Now()
			if !now.Before(deadline) && confirmed.Load()-from >= n {
				return true, nil
			}
			if now.After(hard) {
				return false, fmt.Errorf("only %d of %d messages confirmed within %v", confirmed.Load()-from, n, o.MaxWait)
			}
			step := 5 * time.Millisecond
			if rest := deadline.Sub(now); rest > step {
				step = rest
			}
			select {
			case err := <-done:
				if err == nil {
					err = errors.New("publisher stopped early")
				}
				done <- err
				return false, err
			case <-time.After(step):
			}
		}
	}
	if ok, err := wait(o.Warmup, 0, 1); !ok {
		_ = finish()
		return sample{}, fmt.Errorf("warm-up: %w", err)
	}
	var ms0, ms1 runtime.MemStats
	c0 := confirmed.Load()
	runtime.ReadMemStats(&ms0)
	cpu0 := meter.snap()
	ok, werr := wait(o.Window, c0, int64(o.MinMsgs))
	cpu1 := meter.snap()
	c1 := confirmed.Load()
	runtime.ReadMemStats(&ms1)
	ferr := finish()
	if !ok {
		return sample{}, werr
	}
	if ferr != nil {
		return sample{}, ferr
	}
	n := c1 - c0
	return sample{
		Rate:   float64(n) / cpu1.at.Sub(cpu0.at).Seconds(),
		Msgs:   n,
		Allocs: float64(ms1.Mallocs-ms0.Mallocs) / float64(n),
		Bytes:  float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(n),
		CPU:    cpu0.to(cpu1),
	}, nil
}

// makePayload is a JSON body of exactly n bytes (valid UTF-8, as the
// publisher requires for Web-STOMP text frames).
func makePayload(n int) []byte {
	const head, tail = `{"pad":"`, `"}`
	if n < len(head)+len(tail) {
		n = len(head) + len(tail)
	}
	return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
}

func ratios(def scenarioDef, sr *ScenarioResult) []Ratio {
	var out []Ratio
	for _, t := range def.targets {
		r := Ratio{Scenario: def.name, Label: t.label, Metric: t.metric, Target: t.min}
		if def.kind == kindFanout {
			r.Queues = def.queues
		}
		num, den := sr.contender(t.num), sr.contender(t.den)
		var ns, ds sample
		var nok, dok bool
		if num != nil {
			ns, nok = num.Median()
		}
		if den != nil {
			ds, dok = den.Median()
		}
		if !nok || !dok {
			r.Missing = true
			out = append(out, r)
			continue
		}
		switch t.metric {
		case "rate":
			r.Num, r.Den = ns.Rate, ds.Rate
			r.Pass = t.min == 0 || r.Num >= t.min*r.Den
		case "p99":
			r.Num, r.Den = float64(ns.P99), float64(ds.P99)
			r.Pass = t.min == 0 || r.Num <= t.min*r.Den
		}
		if r.Den > 0 {
			r.Value = r.Num / r.Den
		}
		out = append(out, r)
	}
	return out
}

// Machine describes where the bench ran.
type Machine struct {
	CPUs          int
	CPUModel      string
	Memory        string
	Broker        string // product and version from the AMQP handshake
	Erlang        string
	GoVersion     string
	OS            string
	Kernel        string
	BrokerOnLocal bool
}

func (m Machine) Summary() string {
	return fmt.Sprintf("%d CPUs (%s), %s RAM, %s, %s", m.CPUs, m.CPUModel, m.Memory, m.Broker, m.GoVersion)
}

func describeMachine(conn *amqp.Connection) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	m.CPUModel, m.Memory, m.Kernel = hostInfo()
	if p := conn.Properties; p != nil {
		prod, _ := p["product"].(string)
		ver, _ := p["version"].(string)
		m.Broker = strings.TrimSpace(prod + " " + ver)
		if pl, ok := p["platform"].(string); ok {
			m.Erlang = pl
		}
	}
	return m
}

// waitQuiet waits (up to o.QuietWait) until processes other than the
// bench and the broker use less than o.QuietCores over a 300 ms sample.
func waitQuiet(ctx context.Context, o *Options, meter *cpuMeter, progress io.Writer) {
	if o.QuietWait <= 0 || o.quietSpent >= o.QuietBudget {
		return
	}
	began := time.Now()
	defer func() { o.quietSpent += time.Since(began) }()
	deadline := began.Add(min(o.QuietWait, o.QuietBudget-o.quietSpent))
	said := false
	for {
		a := meter.snap()
		select {
		case <-ctx.Done():
			return
		case <-time.After(300 * time.Millisecond):
		}
		u := a.to(meter.snap())
		other := u.Other
		// The broker finishing earlier work (deleting queues, msg_store
		// garbage collection after a purge) is waited out too, but only
		// for BrokerSettle: with many idle queues it never goes fully idle.
		brokerBusy := u.BrokerKnown && u.Broker >= o.BrokerIdleCores && time.Since(began) < o.BrokerSettle
		if other < o.QuietCores && !brokerBusy {
			if said {
				fmt.Fprintf(progress, "   quiet again after %v (other processes %.2f cores, broker %.2f)\n", time.Since(began).Round(100*time.Millisecond), other, u.Broker)
			}
			return
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(progress, "   machine still busy after %v (other processes %.2f cores); measuring anyway\n", time.Since(began).Round(time.Second), other)
			return
		}
		if !said {
			fmt.Fprintf(progress, "   waiting for the machine to calm down (other processes %.2f cores, broker %.2f)\n", other, u.Broker)
			said = true
		}
		if other >= o.QuietCores {
			time.Sleep(time.Second)
		}
	}
}

// disturbed reports whether a measurement should be repeated because
// other processes used more than o.QuietCores during its window (up to
// o.Retries times; the last attempt counts whatever happened).
func disturbed(o *Options, err error, s sample, attempt int, id string, progress io.Writer) bool {
	if err != nil || attempt >= o.Retries || s.CPU.Other <= o.QuietCores {
		return false
	}
	fmt.Fprintf(progress, "   %-20s disturbed: other processes used %.2f cores during the window; repeating\n", id, s.CPU.Other)
	return true
}
