package main

// The streams scenario: the same durablews Publisher, broker and payload
// publishing to K per-tab queues (every message written K times) and to
// one broadcast stream read by K tabs (written once; a tab's position is
// an offset the tab keeps), with K away subscribers in both designs.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/broadcast"
	"github.com/durablews/durablews/internal/stomptab"
)

// streamsRun is the runtime state the streams contenders share: the
// stream, and how many away tabs have read it so far.
type streamsRun struct {
	o      *Options
	topo   *topology
	prefix string
	stream string

	mu   sync.Mutex
	away int // tabs that subscribed to the stream and left
}

func streamContenderID(k int) string { return fmt.Sprintf("stream-k%d", k) }
func queuesContenderID(k int) string { return fmt.Sprintf("queues-k%d", k) }

// streamsScenario compares both designs at each K in o.StreamSubscribers.
func streamsScenario(o *Options) scenarioDef {
	ks := o.StreamSubscribers
	def := scenarioDef{
		name:   "streams",
		title:  "broadcast to K away subscribers: K per-tab queues vs one stream (durablews Publisher, 16 goroutines × 1 message)",
		kind:   kindStreams,
		anchor: streamContenderID(ks[0]),
	}
	base := durablewsContender(16, 1)
	for _, k := range ks {
		def.contenders = append(def.contenders, withTarget(base, queuesContenderID(k),
			fmt.Sprintf("durablews → %s (bound, no tab attached)", plural(k, "tab queue")),
			func(ctx context.Context, e *env) (string, func() error, error) { return e.streams.queues(ctx, k) }))
		def.contenders = append(def.contenders, withTarget(base, streamContenderID(k),
			fmt.Sprintf("durablews → 1 stream, %s away (offsets kept by the tabs)", plural(k, "tab")),
			func(ctx context.Context, e *env) (string, func() error, error) { return e.streams.streamKey(ctx, k) }))
	}
	last := ks[len(ks)-1]
	if last != ks[0] {
		def.targets = append(def.targets, targetDef{num: streamContenderID(last), den: streamContenderID(ks[0]), metric: "rate", min: 0.9,
			label: fmt.Sprintf("stream with %d away tabs vs with %d", last, ks[0])})
	}
	for _, k := range ks {
		t := targetDef{num: streamContenderID(k), den: queuesContenderID(k), metric: "rate",
			label: fmt.Sprintf("one stream vs %s, %d away subscribers", plural(k, "tab queue"), k)}
		if k >= 1000 {
			t.min = 500
		}
		def.targets = append(def.targets, t)
	}
	return def
}

// withTarget is c publishing to the routing key that setup returns (after
// declaring what it routes to); teardown runs after the measurement.
func withTarget(c contender, id, name string, setup func(ctx context.Context, e *env) (key string, teardown func() error, err error)) contender {
	return contender{id: id, name: name, shape: c.shape, start: func(ctx context.Context, e *env) (instance, error) {
		key, teardown, err := setup(ctx, e)
		if err != nil {
			return nil, err
		}
		e2 := *e
		e2.key = key
		inst, err := c.start(ctx, &e2)
		if err != nil {
			return nil, errors.Join(err, teardown())
		}
		return tornDown{inst, teardown}, nil
	}}
}

type tornDown struct {
	instance
	teardown func() error
}

func (t tornDown) close() error { return errors.Join(t.instance.close(), t.teardown()) }

// queues declares k fresh tab queues bound to a key of their own; they are
// deleted after the measurement.
func (s *streamsRun) queues(_ context.Context, k int) (string, func() error, error) {
	p := fmt.Sprintf("%s-q%d-%s", s.prefix, k, randomHex(3))
	names, err := s.topo.declareQueues(p, k, p+".#", true)
	if err != nil {
		return "", nil, err
	}
	return p + ".bench", func() error { return s.topo.deleteQueues(names) }, nil
}

// streamKey makes sure k tabs have read the stream and left, and returns
// the stream's routing key.
func (s *streamsRun) streamKey(ctx context.Context, k int) (string, func() error, error) {
	if err := s.awayTabs(ctx, k); err != nil {
		return "", nil, err
	}
	return s.prefix + "-stream.bench", func() error { return nil }, nil
}

// awayTabs brings the number of tabs that subscribed to the stream over
// Web-STOMP (from "next", as a new page without a server position does)
// and then dropped their connection up to k.
func (s *streamsRun) awayTabs(ctx context.Context, k int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	need := k - s.away
	if need <= 0 {
		return nil
	}
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	for range min(16, need) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(need) {
				if err := s.awayTab(ctx); err != nil {
					errMu.Lock()
					first = errors.Join(first, err)
					errMu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("away stream tabs: %w", first)
	}
	s.away = k
	return nil
}

func (s *streamsRun) awayTab(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tab, err := stomptab.Dial(dctx, stomptab.Options{URL: s.o.WSURL})
	if err != nil {
		return err
	}
	defer tab.Drop()
	r := stomptab.NewStreamReader(s.stream, broadcast.Position{Kind: broadcast.KindNext}, 10)
	_, err = r.Subscribe(dctx, tab)
	return err
}

// runStreams declares the stream, measures broker memory per away
// subscriber in both designs, then measures throughput like any other
// scenario.
func runStreams(ctx context.Context, o *Options, topo *topology, meter *cpuMeter, def scenarioDef, sr *ScenarioResult, e *env, prefix string, progress io.Writer) {
	s := &streamsRun{o: o, topo: topo, prefix: prefix, stream: topo.exchange + "-" + prefix + "-stream"}
	cfg := broadcast.Config{Stream: s.stream, Exchange: topo.exchange, BindingKeys: []string{prefix + "-stream.#"},
		MaxLengthBytes: 256 << 20, MaxSegmentSizeBytes: 16 << 20}
	if err := broadcast.Declare(ctx, topo.conn, cfg); err != nil {
		sr.Errs = append(sr.Errs, err)
		return
	}
	topo.track(s.stream)
	e.streams = s

	if !o.SkipAwayMemory {
		kmax := o.StreamSubscribers[len(o.StreamSubscribers)-1]
		mem, err := newBrokerMemory(ctx, o.AMQPURL, o.MgmtURL)
		if err == nil {
			var lines []string
			sr.Away, lines, err = s.memoryPerSubscriber(ctx, mem, kmax)
			sr.Notes = append(sr.Notes, lines...)
			for _, l := range lines {
				fmt.Fprintf(progress, "   %s\n", l)
			}
		}
		if err != nil {
			sr.Errs = append(sr.Errs, fmt.Errorf("memory per away subscriber: %w", err))
		}
	}
	runThroughput(ctx, o, topo, meter, def, sr, e, prefix, progress)
}

// brokerMemory reads the broker node's memory from the management API.
type brokerMemory struct {
	base, user, pass string
	node             string
}

// newBrokerMemory uses the management API at mgmtURL ("" = the AMQP URL's
// host, port 15672), with the AMQP URL's credentials.
func newBrokerMemory(ctx context.Context, amqpURL, mgmtURL string) (*brokerMemory, error) {
	u, err := url.Parse(amqpURL)
	if err != nil {
		return nil, err
	}
	pw, _ := u.User.Password()
	if mgmtURL == "" {
		mgmtURL = "http://" + net.JoinHostPort(u.Hostname(), "15672")
	}
	m := &brokerMemory{base: strings.TrimRight(mgmtURL, "/"), user: u.User.Username(), pass: pw}
	var ov struct {
		Node string `json:"node"`
	}
	if err := m.get(ctx, "/api/overview", &ov); err != nil {
		return nil, err
	}
	m.node = ov.Node
	return m, nil
}

func (m *brokerMemory) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.base+path, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(m.user, m.pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("management API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("management API %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// used is the node's Erlang memory (erlang:memory(total), read live with
// ?memory=true; mem_used is only sampled every few seconds): the lowest
// of five readings a second apart, so that connection processes still
// ending and garbage not yet collected count less.
func (m *brokerMemory) used(ctx context.Context) (float64, error) {
	low := 0.0
	for i := range 5 {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
		var n struct {
			Memory struct {
				Total struct {
					Erlang float64 `json:"erlang"`
				} `json:"total"`
			} `json:"memory"`
		}
		if err := m.get(ctx, "/api/nodes/"+url.PathEscape(m.node)+"?memory=true", &n); err != nil {
			return 0, err
		}
		if i == 0 || n.Memory.Total.Erlang < low {
			low = n.Memory.Total.Erlang
		}
	}
	return low, nil
}

// awayMemory is the broker memory per away subscriber in each design, at
// K away subscribers (node-wide, KiB).
type awayMemory struct {
	K              int
	Queues, Stream float64
}

// memoryPerSubscriber is the broker memory k away subscribers cost in
// each design: k empty tab queues bound to the exchange, and k tabs that
// subscribed to the stream and left. Node-wide, so other work on the same
// broker shows up as noise.
func (s *streamsRun) memoryPerSubscriber(ctx context.Context, m *brokerMemory, k int) (*awayMemory, []string, error) {
	before, err := m.used(ctx)
	if err != nil {
		return nil, nil, err
	}
	p := fmt.Sprintf("%s-mem-%s", s.prefix, randomHex(3))
	names, err := s.topo.declareQueues(p, k, p+".#", true)
	if err != nil {
		return nil, nil, err
	}
	withQueues, err := m.used(ctx)
	var procs float64
	if err == nil {
		procs, err = m.queueProcesses(ctx, names)
	}
	if derr := s.topo.deleteQueues(names); err == nil {
		err = derr
	}
	if err != nil {
		return nil, nil, err
	}
	afterDelete, err := m.used(ctx)
	if err != nil {
		return nil, nil, err
	}
	if err := s.awayTabs(ctx, k); err != nil {
		return nil, nil, err
	}
	withTabs, err := m.used(ctx)
	if err != nil {
		return nil, nil, err
	}
	// The management API's consumer count is a statistic (sampled every
	// 5 s); give it up to a minute to show the tabs gone.
	var q struct {
		Consumers int `json:"consumers"`
	}
	left := time.Now()
	for {
		if err := m.get(ctx, "/api/queues/"+url.PathEscape(vhostOf(s.o.AMQPURL))+"/"+url.PathEscape(s.stream), &q); err != nil {
			return nil, nil, err
		}
		if q.Consumers == 0 || time.Since(left) > time.Minute {
			break
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	per := func(d float64) float64 { return d / float64(k) / 1024 }
	kib := func(d float64) string { return strconv.FormatFloat(per(d), 'f', 1, 64) }
	am := &awayMemory{K: k, Queues: per(withQueues - before), Stream: per(withTabs - afterDelete)}
	return am, []string{
		fmt.Sprintf("memory: per away subscriber, tab queue design: %s KiB node-wide (%d empty tab queues bound: node memory %s → %s MiB), of which the queue processes %s KiB",
			kib(withQueues-before), k, mib(before), mib(withQueues), kib(procs)),
		fmt.Sprintf("memory: per away subscriber, stream design: %s KiB node-wide (%d tabs subscribed to the stream and left: node memory %s → %s MiB); consumers left on the stream: %d (after %v more)",
			kib(withTabs-afterDelete), k, mib(afterDelete), mib(withTabs), q.Consumers, time.Since(left).Round(time.Second)),
	}, nil
}

// queueProcesses sums the memory the management API reports for the
// named queues' processes (statistics, so it first waits for a fresh
// sample). Unlike the node-wide figure, other clients of the broker do not
// move it.
func (m *brokerMemory) queueProcesses(ctx context.Context, names []string) (float64, error) {
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(6 * time.Second): // collect_statistics_interval is 5 s
	}
	var qs []struct {
		Name   string  `json:"name"`
		Memory float64 `json:"memory"`
	}
	if err := m.get(ctx, "/api/queues?columns=name,memory", &qs); err != nil {
		return 0, err
	}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	sum, found := 0.0, 0
	for _, q := range qs {
		if want[q.Name] {
			sum += q.Memory
			found++
		}
	}
	if found != len(names) {
		return 0, fmt.Errorf("management API listed %d of the %d tab queues", found, len(names))
	}
	return sum, nil
}

// fdsFor is a conservative count of the broker file descriptors k
// connected tabs hold: a socket each, and for a stream reader also the
// segment and index files it reads the log from (each consumer opens its
// own).
func fdsFor(k int, stream bool) int {
	if stream {
		return 3 * k
	}
	return k
}

// checkFDs fails when tabs connected tabs would not fit in the broker's
// file descriptors (management API fd_total/fd_used, 100 kept spare). A
// broker that runs out (the default ulimit -n 1024 with ~1,000 tabs)
// does not just refuse connections: RabbitMQ 3.10.8's memory monitor
// crashes on EMFILE and the node stops declaring queues until restarted,
// for every client of it.
func (m *brokerMemory) checkFDs(ctx context.Context, tabs int, stream bool) error {
	var n struct {
		FDUsed  int `json:"fd_used"`
		FDTotal int `json:"fd_total"`
	}
	if err := m.get(ctx, "/api/nodes/"+url.PathEscape(m.node), &n); err != nil {
		return err
	}
	if need := fdsFor(tabs, stream); n.FDTotal > 0 && n.FDUsed+need > n.FDTotal-100 {
		return fmt.Errorf("%d tabs need about %d file descriptors on the broker, which has %d of %d in use: "+
			"raise the broker's open-files limit (ulimit -n / LimitNOFILE, then restart it) or pass a smaller -connected-k",
			tabs, need, n.FDUsed, n.FDTotal)
	}
	return nil
}

func mib(b float64) string { return strconv.FormatFloat(b/(1<<20), 'f', 1, 64) }

// streamE2E is durablewsE2E publishing into a stream the tabs read.
func streamE2E() e2eContender {
	c := durablewsE2E()
	c.id, c.name, c.stream = "durablews-stream-e2e", "durablews Publisher (defaults) → 1 stream", true
	return c
}

// connectedScenarios: K connected Web-STOMP tabs (acking each message),
// each with its own queue vs all reading one stream, twice per K:
// connected-K at o.E2ERate deliveries/s in total (o.E2ERate/K messages/s,
// the same delivery load at every K) for the latencies, and
// connected-K-sat at o.SaturationRate deliveries/s, above what the broker
// delivers, for its ceiling and the broker memory per connected tab.
func connectedScenarios(o *Options) []scenarioDef {
	var out []scenarioDef
	for _, k := range o.ConnectedTabs {
		for _, sat := range []bool{false, true} {
			total, name, what := o.E2ERate, fmt.Sprintf("connected-%d", k), "p99"
			if sat {
				total, name, what = o.SaturationRate, name+"-sat", "rate"
			}
			// At least 10 messages over warm-up and window, or there is nothing to measure.
			rate := max(total/k, int(math.Ceil(10/(o.E2EWarmup+o.E2EWindow).Seconds())))
			title := fmt.Sprintf("%s connected over Web-STOMP (acking), %d msg/s offered (%d deliveries/s): tab queues vs one stream", plural(k, "tab"), rate, rate*k)
			if sat {
				title += "; saturation: delivered/s = every delivery ÷ first send to last delivery"
			}
			targets := []targetDef{{num: "durablews-stream-e2e", den: "durablews-e2e", metric: "rate", label: fmt.Sprintf("deliveries/s, one stream vs %s", plural(k, "tab queue"))}}
			if what == "p99" {
				targets = append([]targetDef{{num: "durablews-stream-e2e", den: "durablews-e2e", metric: "p99", label: fmt.Sprintf("end-to-end p99, one stream vs %s", plural(k, "tab queue"))}}, targets...)
			} else {
				targets[0].label += " (saturation)"
			}
			out = append(out, scenarioDef{
				name: name, title: title,
				kind: kindE2E, tabs: k, rate: rate, saturate: sat,
				e2e:     []e2eContender{durablewsE2E(), streamE2E()},
				anchor:  "durablews-e2e",
				targets: targets,
			})
		}
	}
	return out
}

// declareStream declares a stream for one measurement, bound with binding;
// the caller deletes it like a queue.
func declareStream(ctx context.Context, topo *topology, key, binding string) (string, error) {
	name := topo.exchange + "-" + key + "-stream"
	topo.track(name)
	err := broadcast.Declare(ctx, topo.conn, broadcast.Config{Stream: name, Exchange: topo.exchange, BindingKeys: []string{binding},
		MaxLengthBytes: 256 << 20, MaxSegmentSizeBytes: 16 << 20})
	return name, err
}

// subscribeStream subscribes a tab to the stream from "next" (what is
// published from now on), prefetch as the queue tabs have.
func subscribeStream(ctx context.Context, tab *stomptab.Tab, stream string) (*stomptab.Subscription, error) {
	ss, err := stomptab.NewStreamReader(stream, broadcast.Position{Kind: broadcast.KindNext}, stomptab.DefaultPrefetch).Subscribe(ctx, tab)
	if err != nil {
		return nil, err
	}
	return ss.Subscription(), nil
}

// vhostOf is the vhost of an AMQP URL ("/" when it names none).
func vhostOf(amqpURL string) string {
	if u, err := amqp.ParseURI(amqpURL); err == nil && u.Vhost != "" {
		return u.Vhost
	}
	return "/"
}
