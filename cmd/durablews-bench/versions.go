package main

// The -versions mode: the publisher comparison (durablews vs raw
// amqp091-go, one at a time and pipelined) and the streams scenario (K tab
// queues vs one stream) against each RabbitMQ version's shared node in
// turn, printed as one table with a column per version. Every ratio in a
// column divides two figures measured in the same Run on the same broker;
// the anchors (raw amqp091-go's msg/s) are rows of the table too.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/durablews/durablews/internal/brokerversion"
)

// versionsScenarios and versionsContenders select what the -versions
// mode runs of scenarios(): the single-queue publisher scenarios without
// watermill-amqp, the streams scenario and the receipts scenario whole.
// -scenarios narrows it further (versionOptions).
var (
	versionsScenarios  = regexp.MustCompile(`^(one-by-one-q1|pipelined-q1|streams|receipts-\d+tabs)$`)
	versionsContenders = regexp.MustCompile(`^(durablews-1x1|durablews-1x100|durablews-16x1|raw-inflight1|raw-inflight16|raw-inflight256|raw-batch100|queues-k\d+|stream-k\d+|durablews-receipts-(off|on))$`)
)

// versionRun is one version's part of a -versions run.
type versionRun struct {
	Name   string
	Report *Report // nil when the run could not start
	Err    error   // the Run's own error (connect, cancel, cleanup)
}

// errs is every error of the version's run.
func (v *versionRun) errs() []error {
	var out []error
	if v.Err != nil {
		out = append(out, v.Err)
	}
	if v.Report != nil {
		out = append(out, v.Report.Errors()...)
	}
	return out
}

// VersionsReport is a -versions run: one Run per version, in order.
type VersionsReport struct {
	Started, Finished time.Time
	Options           Options // the options every version ran with (URLs aside)
	Versions          []*versionRun
}

// Errors lists every error of the run, prefixed with its version.
func (r *VersionsReport) Errors() []error {
	var out []error
	for _, v := range r.Versions {
		for _, e := range v.errs() {
			out = append(out, fmt.Errorf("RabbitMQ %s: %w", v.Name, e))
		}
	}
	return out
}

// parseVersions turns "4.0,3.10" (or "all", or "") into version names,
// each one brokerversion knows.
func parseVersions(s string) ([]string, error) {
	if s == "" || s == "all" || s == "true" {
		return brokerversion.Names(), nil
	}
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		name := strings.TrimSpace(f)
		if _, err := brokerversion.Lookup(name); err != nil {
			return nil, fmt.Errorf("unknown RabbitMQ version %q (supported: %s)", name, strings.Join(brokerversion.Names(), ", "))
		}
		if seen[name] {
			return nil, fmt.Errorf("%q named twice", name)
		}
		seen[name] = true
		out = append(out, name)
	}
	return out, nil
}

// versionOptions is base pointed at the named version's shared node, with
// the -versions selection of scenarios and contenders.
func versionOptions(base Options, name string) (Options, error) {
	v, err := brokerversion.Lookup(name)
	if err != nil {
		return base, err
	}
	o := base
	o.AMQPURL, o.WSURL, o.MgmtURL = v.AMQPURL(), v.WebSTOMPURL(), v.ManagementURL()
	o.Only = base.Scenarios // -versions -scenarios RE: of its selection, only those
	o.Scenarios, o.Contenders = versionsScenarios, versionsContenders
	return o, nil
}

// RunVersions runs the -versions selection on each named version's shared
// node in turn (`bash scripts/rabbitmq-versions.sh start VER` makes one
// ready). A version that fails does not stop the others; its errors are in
// the report. It returns early only when ctx ends.
func RunVersions(ctx context.Context, base Options, names []string) (*VersionsReport, error) {
	progress := base.Progress
	if progress == nil {
		progress = io.Discard
	}
	rep := &VersionsReport{Started: time.Now(), Options: base}
	defer func() { rep.Finished = time.Now() }()
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		vr := &versionRun{Name: name}
		rep.Versions = append(rep.Versions, vr)
		o, err := versionOptions(base, name)
		if err != nil {
			vr.Err = err
			continue
		}
		fmt.Fprintf(progress, "=== RabbitMQ %s: %s\n", name, o.AMQPURL)
		vr.Report, vr.Err = Run(ctx, o)
		if vr.Err != nil && vr.Report == nil {
			vr.Err = fmt.Errorf("%w (start it: bash scripts/rabbitmq-versions.sh start %s)", vr.Err, name)
		}
		if errors.Is(vr.Err, context.Canceled) || errors.Is(vr.Err, context.DeadlineExceeded) {
			return rep, ctx.Err()
		}
	}
	return rep, nil
}

// versionsRow is one metric of the side-by-side table: a label and how
// to read its figure from one version's report (ok false: no figure).
type versionsRow struct {
	label    string
	scenario string // the scenario it reads ("" for the machine's load)
	ratio    bool   // a ratio (bold in markdown), else an absolute figure
	value    func(r *Report) (float64, bool)
}

// medianSample is the per-field median of a contender in a scenario.
func medianSample(r *Report, scenario, id string) (sample, bool) {
	for _, s := range r.Scenarios {
		if s.Name != scenario {
			continue
		}
		if c := s.contender(id); c != nil {
			return c.Median()
		}
	}
	return sample{}, false
}

// medianRate is the median msg/s of a contender in a scenario.
func medianRate(r *Report, scenario, id string) (float64, bool) {
	m, ok := medianSample(r, scenario, id)
	return m.Rate, ok && m.Rate > 0
}

func rateRow(label, scenario, id string) versionsRow {
	return versionsRow{label: label, scenario: scenario, value: func(r *Report) (float64, bool) { return medianRate(r, scenario, id) }}
}

// ratioRow is median(num) ÷ median(den), as the ratio lines of a Run.
func ratioRow(label, scenario, num, den string) versionsRow {
	return versionsRow{label: label, scenario: scenario, ratio: true, value: func(r *Report) (float64, bool) {
		n, nok := medianRate(r, scenario, num)
		d, dok := medianRate(r, scenario, den)
		if !nok || !dok {
			return 0, false
		}
		return n / d, true
	}}
}

// msRow is a latency of a contender's median sample, in ms.
func msRow(label, scenario, id string, of func(s sample) time.Duration) versionsRow {
	return versionsRow{label: label, scenario: scenario, value: func(r *Report) (float64, bool) {
		m, ok := medianSample(r, scenario, id)
		return ms(of(m)), ok && of(m) > 0
	}}
}

// receiptsRows are the receipts scenario's: confirmed msg/s off and on
// and their ratio, publish → tab p50/p99 off and on, publish → receipt at
// the service p50/p99.
func receiptsRows(o *Options) []versionsRow {
	def := receiptsScenario(o)
	sc, off, on := def.name, receiptsContenderID(false), receiptsContenderID(true)
	what := fmt.Sprintf("receipts, %s at %d msg/s", plural(def.tabs, "tab"), def.rate)
	p50 := func(s sample) time.Duration { return s.P50 }
	p99 := func(s sample) time.Duration { return s.P99 }
	return []versionsRow{
		rateRow(what+", off: confirmed msg/s (anchor)", sc, off),
		rateRow(what+", on: confirmed msg/s", sc, on),
		ratioRow("receipts on ÷ off, confirmed msg/s", sc, on, off),
		msRow(what+", off: publish → tab p50 ms", sc, off, p50),
		msRow(what+", on: publish → tab p50 ms", sc, on, p50),
		msRow(what+", off: publish → tab p99 ms", sc, off, p99),
		msRow(what+", on: publish → tab p99 ms", sc, on, p99),
		msRow(what+": publish → receipt at the service p50 ms", sc, on, func(s sample) time.Duration { return s.RP50 }),
		msRow(what+": publish → receipt at the service p99 ms", sc, on, func(s sample) time.Duration { return s.RP99 }),
	}
}

// rows is the table's metrics: the publisher's ratios to raw amqp091-go
// with their anchors, then the streams scenario at each K. Memory rows
// only when some version measured them.
func (r *VersionsReport) rows() []versionsRow {
	rows := []versionsRow{
		rateRow("raw amqp091-go, 1 msg, wait for its confirm: msg/s (anchor)", "one-by-one-q1", "raw-inflight1"),
		rateRow("durablews, 1 goroutine × 1 msg/call: msg/s", "one-by-one-q1", "durablews-1x1"),
		ratioRow("durablews ÷ raw, one at a time", "one-by-one-q1", "durablews-1x1", "raw-inflight1"),
		rateRow("raw amqp091-go, 256 in flight: msg/s (anchor)", "pipelined-q1", "raw-inflight256"),
		rateRow("raw amqp091-go, batches of 100: msg/s", "pipelined-q1", "raw-batch100"),
		rateRow("raw amqp091-go, 16 in flight: msg/s", "pipelined-q1", "raw-inflight16"),
		rateRow("durablews, batches of 100: msg/s", "pipelined-q1", "durablews-1x100"),
		rateRow("durablews, 16 goroutines × 1 msg/call: msg/s", "pipelined-q1", "durablews-16x1"),
		ratioRow("durablews ÷ raw, pipelined (batches of 100 ÷ raw 256 in flight)", "pipelined-q1", "durablews-1x100", "raw-inflight256"),
		ratioRow("durablews ÷ raw, batches of 100 (same shape)", "pipelined-q1", "durablews-1x100", "raw-batch100"),
		ratioRow("durablews ÷ raw, 16 goroutines ÷ raw 256 in flight", "pipelined-q1", "durablews-16x1", "raw-inflight256"),
		ratioRow("durablews ÷ raw, 16 goroutines ÷ raw 16 in flight (same depth)", "pipelined-q1", "durablews-16x1", "raw-inflight16"),
	}
	ks := r.Options.StreamSubscribers
	for _, k := range ks {
		rows = append(rows,
			rateRow(fmt.Sprintf("%s, durablews 16 goroutines: msg/s", plural(k, "tab queue")), "streams", queuesContenderID(k)),
			rateRow(fmt.Sprintf("1 stream, %d away: msg/s", k), "streams", streamContenderID(k)),
			ratioRow(fmt.Sprintf("streams ÷ queues at K=%d", k), "streams", streamContenderID(k), queuesContenderID(k)))
	}
	if len(ks) > 1 {
		last := ks[len(ks)-1]
		rows = append(rows, ratioRow(fmt.Sprintf("stream at K=%d ÷ stream at K=%d", last, ks[0]), "streams", streamContenderID(last), streamContenderID(ks[0])))
	}
	rows = append(rows, receiptsRows(&r.Options)...)
	away := func(r *Report) *awayMemory {
		for _, s := range r.Scenarios {
			if s.Away != nil {
				return s.Away
			}
		}
		return nil
	}
	measured := 0
	for _, v := range r.Versions {
		if v.Report != nil && away(v.Report) != nil {
			measured = away(v.Report).K
		}
	}
	if measured > 0 {
		rows = append(rows,
			versionsRow{label: fmt.Sprintf("broker KiB per away subscriber, tab queues (K=%d, node-wide)", measured), scenario: "streams", value: func(r *Report) (float64, bool) {
				if a := away(r); a != nil {
					return a.Queues, true
				}
				return 0, false
			}},
			versionsRow{label: fmt.Sprintf("broker KiB per away subscriber, stream (K=%d, node-wide)", measured), scenario: "streams", value: func(r *Report) (float64, bool) {
				if a := away(r); a != nil {
					return a.Stream, true
				}
				return 0, false
			}})
	}
	// How loaded the machine was while this version ran: the same cores
	// are shared with the broker, the bench and whatever else runs.
	rows = append(rows, versionsRow{label: "other processes during the windows: cores (median over the version's windows)", value: func(r *Report) (float64, bool) {
		var v []float64
		for _, s := range r.Scenarios {
			for _, c := range s.Contenders {
				for _, smp := range c.Samples {
					v = append(v, smp.CPU.Other)
				}
			}
		}
		if len(v) == 0 {
			return 0, false
		}
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2], true
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
	}})
	if only := r.Options.Scenarios; only != nil { // -versions -scenarios RE: the rows of what ran
		rows = slices.DeleteFunc(rows, func(row versionsRow) bool { return row.scenario != "" && !only.MatchString(row.scenario) })
	}
	return rows
}

// Table is the side-by-side table: a row per metric, a column per version
// (headed with the broker's own version string when it answered). A cell
// without a figure reads "ERROR" when the version's run had errors, else
// "-".
func (r *VersionsReport) Table(markdown bool) *table {
	t := &table{head: []string{"metric"}, numFrom: 1}
	for _, v := range r.Versions {
		h := "RabbitMQ " + v.Name
		if v.Report != nil && v.Report.Machine.Broker != "" {
			h = v.Report.Machine.Broker
		}
		t.head = append(t.head, h)
	}
	for _, row := range r.rows() {
		cells := []string{row.label}
		for _, v := range r.Versions {
			cell := "-"
			if len(v.errs()) > 0 {
				cell = "ERROR"
			}
			if v.Report != nil {
				if x, ok := row.value(v.Report); ok {
					cell = num(x)
					if row.ratio && markdown {
						cell = "**" + cell + "**"
					}
				}
			}
			cells = append(cells, cell)
		}
		t.add(cells...)
	}
	return t
}

// Print writes the run's settings, the table, then every error.
func (r *VersionsReport) Print(w io.Writer, markdown bool) {
	o := r.Options
	var m Machine
	for _, v := range r.Versions {
		if v.Report != nil {
			m = v.Report.Machine
			break
		}
	}
	ran := func(scenario string) bool { return o.Scenarios == nil || o.Scenarios.MatchString(scenario) }
	parts := []string{fmt.Sprintf("%d run(s) per contender (median)", o.Runs)}
	if ran("one-by-one-q1") || ran("pipelined-q1") || ran("streams") {
		parts = append(parts, fmt.Sprintf("warm-up %v, window ≥ %v and ≥ %d msgs", o.Warmup, o.Window, o.MinMsgs))
	}
	parts = append(parts, fmt.Sprintf("%d-byte persistent messages", o.PayloadBytes))
	if ran("one-by-one-q1") || ran("pipelined-q1") {
		parts = append(parts, "1 durable classic queue (publisher rows)")
	}
	if ran("streams") {
		parts = append(parts, fmt.Sprintf("K = %s away subscribers (streams rows)", joinInts(o.StreamSubscribers)))
	}
	if def := receiptsScenario(&o); ran(def.name) {
		parts = append(parts, fmt.Sprintf("receipts rows: end to end, %v warm-up then %v measured, durable tab queues, receipts to a durable classic queue", o.E2EWarmup, o.E2EWindow))
	}
	if o.Scenarios != nil {
		parts = append(parts, fmt.Sprintf("only the scenarios matching %q", o.Scenarios))
	}
	what := fmt.Sprintf("%s; versions one after another, %s", strings.Join(parts, ", "), r.Finished.Sub(r.Started).Round(time.Second))
	if markdown {
		fmt.Fprintf(w, "Machine: %d CPUs (%s), %s RAM, Linux %s; %s; every broker on the same machine.\n\n", m.CPUs, m.CPUModel, m.Memory, m.Kernel, m.GoVersion)
		fmt.Fprintf(w, "Run: %s, %s.\n\n", r.Started.Format("2006-01-02 15:04 MST"), what)
	} else {
		fmt.Fprintf(w, "\nmachine: %d CPUs (%s), %s RAM, Linux %s, %s\n", m.CPUs, m.CPUModel, m.Memory, m.Kernel, m.GoVersion)
		fmt.Fprintf(w, "run: %s\n\n", what)
	}
	r.Table(markdown).print(w, markdown)
	if o.Short {
		fmt.Fprintln(w, "\n(-short: a smoke run; the numbers mean nothing)")
	}
	if errs := r.Errors(); len(errs) > 0 {
		fmt.Fprintf(w, "\n%d error(s):\n", len(errs))
		for _, e := range errs {
			fmt.Fprintf(w, "  %v\n", e)
		}
	}
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
