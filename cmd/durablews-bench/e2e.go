package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/stomptab"
)

// e2eContender publishes at a fixed rate, one message at a time, without
// waiting for a confirm before sending the next (open loop: each message
// is due at its scheduled time, and its latency counts from then).
type e2eContender struct {
	id, name, shape string
	start           func(ctx context.Context, e *env) (e2ePublisher, error)
	stream          bool // the tabs read one broadcast stream instead of a queue each
	receipts        bool // the tabs send delivery receipts (receipts.go)
}

type e2ePublisher interface {
	send(ctx context.Context, id string, body []byte)
	// wait waits for every confirm and returns how many were confirmed
	// and the first error.
	wait() (int64, error)
	close() error
}

type firstErr struct {
	mu  sync.Mutex
	err error
}

func (f *firstErr) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

func (f *firstErr) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// durablewsE2E calls Publish for each message from its own goroutine, as
// a request handler would.
func durablewsE2E() e2eContender {
	return e2eContender{
		id:    "durablews-e2e",
		name:  "durablews Publisher (defaults)",
		shape: "Publish(1 msg) in a goroutine per message",
		start: func(ctx context.Context, e *env) (e2ePublisher, error) {
			cfg := durablews.NewConfig(e.amqpURL, durablews.Exchange{Name: e.exchange, Kind: durablews.KindTopic})
			p, err := durablews.NewPublisher(cfg, nil)
			if err != nil {
				return nil, err
			}
			return &dwsE2E{p: p, e: e}, nil
		},
	}
}

type dwsE2E struct {
	p         *durablews.Publisher
	e         *env
	wg        sync.WaitGroup
	confirmed atomic.Int64
	err       firstErr
}

func (d *dwsE2E) send(_ context.Context, id string, body []byte) {
	m := message.NewMessage(id, body)
	m.Metadata.Set(durablews.RoutingKeyMetadataKey, d.e.key)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.p.Publish(d.e.exchange, m); err != nil {
			d.err.set(err)
			return
		}
		d.confirmed.Add(1)
	}()
}

func (d *dwsE2E) wait() (int64, error) {
	d.wg.Wait()
	return d.confirmed.Load(), d.err.get()
}

func (d *dwsE2E) close() error { return d.p.Close() }

// rawE2E publishes on one confirm channel from the pacing goroutine and
// collects deferred confirms in another, at most 256 in flight.
func rawE2E() e2eContender {
	return e2eContender{
		id:    "raw-e2e",
		name:  "raw amqp091-go, 1 channel",
		shape: "pipelined deferred confirms, 256 in flight",
		start: func(ctx context.Context, e *env) (e2ePublisher, error) {
			conn, ch, err := dialConfirmChannel(e.amqpURL, "durablews-bench-raw-e2e")
			if err != nil {
				return nil, err
			}
			r := &rawE2EPub{conn: conn, ch: ch, e: e,
				slots: make(chan struct{}, 256), pending: make(chan *amqp.DeferredConfirmation, 256),
				collected: make(chan struct{})}
			go r.collect()
			return r, nil
		},
	}
}

type rawE2EPub struct {
	conn      *amqp.Connection
	ch        *amqp.Channel
	e         *env
	slots     chan struct{}
	pending   chan *amqp.DeferredConfirmation
	collected chan struct{}
	confirmed atomic.Int64
	err       firstErr
	closeOnce sync.Once
}

func (r *rawE2EPub) collect() {
	defer close(r.collected)
	for dc := range r.pending {
		if !dc.Wait() {
			r.err.set(fmt.Errorf("nack (or channel closed) for delivery tag %d", dc.DeliveryTag))
		} else {
			r.confirmed.Add(1)
		}
		<-r.slots
	}
}

func (r *rawE2EPub) send(ctx context.Context, id string, body []byte) {
	r.slots <- struct{}{}
	dc, err := r.ch.PublishWithDeferredConfirmWithContext(ctx, r.e.exchange, r.e.key, false, false, amqp.Publishing{
		ContentType:  "application/json",
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Timestamp:    time.Now(),
		Body:         body,
	})
	if err != nil {
		<-r.slots
		r.err.set(err)
		return
	}
	r.pending <- dc
}

func (r *rawE2EPub) wait() (int64, error) {
	r.closeOnce.Do(func() { close(r.pending) })
	<-r.collected
	return r.confirmed.Load(), r.err.get()
}

func (r *rawE2EPub) close() error {
	r.closeOnce.Do(func() { close(r.pending) })
	err := r.conn.Close() // completes outstanding deferred confirms
	<-r.collected
	return err
}

// e2eBody is a JSON body of exactly size bytes carrying the message index
// and its scheduled send time.
func e2eBody(i int, sched time.Time, size int) []byte {
	b := fmt.Appendf(make([]byte, 0, size), `{"i":%d,"t":%d,"pad":"`, i, sched.UnixNano())
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	return append(b, '"', '}')
}

func parseE2EBody(b []byte) (i int, sched int64, ok bool) {
	field := func(name string) (int64, bool) {
		k := []byte(`"` + name + `":`)
		at := bytes.Index(b, k)
		if at < 0 {
			return 0, false
		}
		rest := b[at+len(k):]
		end := bytes.IndexByte(rest, ',')
		if end < 0 {
			return 0, false
		}
		v, err := strconv.ParseInt(string(rest[:end]), 10, 64)
		return v, err == nil
	}
	iv, ok1 := field("i")
	t, ok2 := field("t")
	return int(iv), t, ok1 && ok2
}

func runE2E(ctx context.Context, o *Options, topo *topology, meter *cpuMeter, def scenarioDef, sr *ScenarioResult, e *env, prefix string, progress io.Writer) {
	if def.rate > 0 { // the scenario offers its own rate
		orig, oc := o, *o
		oc.E2ERate = def.rate
		o = &oc
		defer func() { orig.quietSpent = oc.quietSpent }()
	}
	var cs []e2eContender
	for _, c := range def.e2e {
		if selected(o, c.id) || c.id == def.anchor {
			cs = append(cs, c)
			sr.Contenders = append(sr.Contenders, &ContenderResult{ID: c.id, Name: c.name, Shape: c.shape})
		}
	}
	// The p99 of one run (the 50 slowest of 5,000 messages) moves with a
	// single 20-50 ms scheduling stall of the 2-core machine, which hits
	// whichever contender runs then; the 1-tab latency scenario therefore
	// takes the median over more runs.
	runs := o.Runs
	if def.tabs == 1 && o.E2ELatencyRuns > runs {
		runs = o.E2ELatencyRuns
	}
	for r := range runs {
		for _, i := range rotate(len(cs), r) {
			if ctx.Err() != nil {
				return
			}
			if o.Settle > 0 {
				time.Sleep(o.Settle)
			}
			var s sample
			var err error
			for attempt := 0; ; attempt++ {
				waitQuiet(ctx, o, meter, progress)
				pprof.Do(ctx, pprof.Labels("scenario", def.name, "contender", cs[i].id), func(ctx context.Context) {
					key := fmt.Sprintf("%s.r%d%d%d", prefix, r, i, attempt)
					if def.kind == kindReceipts {
						s, err = measureReceipts(ctx, o, topo, meter, cs[i], def.tabs, e, key)
					} else {
						s, err = measureE2E(ctx, o, topo, meter, cs[i], def.tabs, def.saturate, e, key)
					}
				})
				if !disturbed(o, err, s, attempt, cs[i].id, progress) {
					break
				}
			}
			cr := sr.Contenders[i]
			if err != nil {
				cr.Errs = append(cr.Errs, err)
				fmt.Fprintf(progress, "   run %d/%d %-20s ERROR %v\n", r+1, runs, cs[i].id, err)
				continue
			}
			cr.Samples = append(cr.Samples, s)
			if def.kind == kindReceipts {
				rec := ""
				if cs[i].receipts {
					rec = fmt.Sprintf("  receipt p50 %6.2f ms  p99 %7.2f ms  missing %d", ms(s.RP50), ms(s.RP99), s.ReceiptsMissing)
				}
				fmt.Fprintf(progress, "   run %d/%d %-22s offered %5.0f msg/s  confirmed %5.0f msg/s  delivered %6.0f msg/s  p50 %6.2f ms  p99 %7.2f ms%s  backlog %d  cpu client %.2f broker %.2f other %.2f\n",
					r+1, runs, cs[i].id, s.Offered, s.Rate, s.Delivered, ms(s.P50), ms(s.P99), rec, s.Backlog, s.CPU.Client, s.CPU.Broker, s.CPU.Other)
				continue
			}
			fmt.Fprintf(progress, "   run %d/%d %-20s offered %6.0f msg/s  delivered %7.0f msg/s  p50 %6.2f ms  p99 %7.2f ms  backlog %d  broker KiB/tab %s  cpu client %.2f broker %.2f other %.2f\n",
				r+1, runs, cs[i].id, s.Offered, s.Rate, ms(s.P50), ms(s.P99), s.Backlog, tabKiB(s.TabKiB), s.CPU.Client, s.CPU.Broker, s.CPU.Other)
		}
	}
}

// percentile is the p-th percentile (nearest rank) of sorted latencies.
func percentile(sorted []time.Duration, p float64) time.Duration {
	k := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[max(0, min(k, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type tabResult struct {
	lats    []time.Duration
	got     int // deliveries, all messages
	last    time.Time
	lastAny time.Time // last delivery of any message, warm-up included
	err     error
}

// receive reads n messages of sub (e2eBody, the first warm of them
// warm-up), records the latency of the others, acks each and then calls
// afterAck (nil: nothing), like the browser client's handler, ACK and
// receipt. It stops at the first error or when ctx ends.
func (res *tabResult) receive(ctx context.Context, sub *stomptab.Subscription, n, warm int, afterAck func(m stomptab.Message, at time.Time)) {
	res.lats = make([]time.Duration, 0, n-warm)
	for res.got < n {
		m, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() == nil {
				res.err = err
			}
			return
		}
		now := time.Now()
		i, sched, ok := parseE2EBody(m.Body)
		if !ok {
			res.err = fmt.Errorf("unexpected body %.40q", m.Body)
			return
		}
		if i >= warm {
			res.lats = append(res.lats, now.Sub(time.Unix(0, sched)))
			res.last = now
		}
		res.got++
		res.lastAny = now
		if err := sub.Ack(m); err != nil {
			res.err = err
			return
		}
		if afterAck != nil {
			afterAck(m, now)
		}
	}
}

// measureE2E opens tabs (each a Web-STOMP connection with a durable
// per-tab queue, like the browser client), publishes rate msg/s for
// warm-up + window, and records when each tab received each message.
//
// saturate: the offered load is above what the broker delivers, so the
// rate is every delivery (warm-up included) from the first send to the
// last delivery, and the broker's memory is read before and after the tabs
// connect (node-wide, lowest of five readings; 10 s more per measurement).
func measureE2E(ctx context.Context, o *Options, topo *topology, meter *cpuMeter, c e2eContender, tabs int, saturate bool, base *env, key string) (sample, error) {
	e := *base
	e.key = key + ".m"
	binding := key + ".#"

	type tabSub struct {
		tab *stomptab.Tab
		sub *stomptab.Subscription
	}
	var ts []tabSub
	var queues []string
	stream := ""
	if c.stream {
		s, err := declareStream(ctx, topo, key, binding)
		if err != nil {
			return sample{}, err
		}
		stream, queues = s, append(queues, s)
	}
	defer func() {
		for _, t := range ts {
			_ = t.tab.Close()
		}
		if len(queues) > 0 {
			_ = topo.deleteQueues(queues)
		}
	}()
	var mem *brokerMemory
	var memBefore float64
	if saturate || tabs > 10 {
		var err error
		if mem, err = newBrokerMemory(ctx, o.AMQPURL, o.MgmtURL); err == nil {
			err = mem.checkFDs(ctx, tabs, c.stream)
		}
		if err == nil && saturate {
			memBefore, err = mem.used(ctx)
		}
		if err != nil {
			return sample{}, fmt.Errorf("before the tabs connect: %w", err)
		}
	}
	for range tabs {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		tab, err := stomptab.Dial(dctx, stomptab.Options{URL: o.WSURL})
		if err != nil {
			cancel()
			return sample{}, err
		}
		var sub *stomptab.Subscription
		if stream != "" {
			sub, err = subscribeStream(dctx, tab, stream)
		} else {
			q := stomptab.RandomQueueName("bench")
			topo.track(q)
			queues = append(queues, q)
			sub, err = tab.Subscribe(dctx, stomptab.Sub{Exchange: e.exchange, BindingKey: binding, QueueName: q, Expires: leakGuard})
		}
		cancel()
		if err != nil {
			tab.Drop()
			return sample{}, err
		}
		ts = append(ts, tabSub{tab, sub})
	}
	tabKiB := 0.0
	if saturate {
		memTabs, err := mem.used(ctx)
		if err != nil {
			return sample{}, fmt.Errorf("broker memory with %d tabs connected: %w", tabs, err)
		}
		tabKiB = (memTabs - memBefore) / float64(tabs) / 1024
	}

	pub, err := c.start(ctx, &e)
	if err != nil {
		return sample{}, fmt.Errorf("start: %w", err)
	}
	defer pub.close()

	interval := time.Second / time.Duration(o.E2ERate)
	warm := int(o.E2EWarmup / interval)
	n := warm + int(o.E2EWindow/interval)

	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	results := make([]tabResult, len(ts))
	var wg sync.WaitGroup
	for t := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[t].receive(rctx, ts[t].sub, n, warm, nil)

		}()
	}

	start := time.Now().Add(20 * time.Millisecond)
	firstMeasured := start.Add(time.Duration(warm) * interval)
	var cpu0 cpuSnap
	id := randomHex(4)
	for i := range n {
		sched := start.Add(time.Duration(i) * interval)
		if d := time.Until(sched); d > 0 {
			time.Sleep(d)
		}
		if i == warm {
			cpu0 = meter.snap()
		}
		pub.send(ctx, id+"-"+strconv.Itoa(i), e2eBody(i, sched, len(e.payload)))
		if ctx.Err() != nil {
			break
		}
	}
	cpu1 := meter.snap()
	if warm == 0 {
		cpu0 = cpu1 // degenerate; only in odd flag combinations
	}
	pubEnd := time.Now()
	confirmed, perr := pub.wait()

	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(o.E2EDrain):
		rcancel()
		<-drained
	}
	if perr != nil {
		return sample{}, fmt.Errorf("publish: %w", perr)
	}
	if confirmed != int64(n) {
		return sample{}, fmt.Errorf("publish: %d of %d confirmed", confirmed, n)
	}
	var all []time.Duration
	var last, lastAny time.Time
	backlog, delivered := 0, 0
	var errs []error
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
		}
		all = append(all, r.lats...)
		if r.last.After(last) {
			last = r.last
		}
		if r.lastAny.After(lastAny) {
			lastAny = r.lastAny
		}
		backlog += n - r.got
		delivered += r.got
	}
	if len(errs) > 0 {
		return sample{}, fmt.Errorf("tab: %w", errors.Join(errs...))
	}
	if len(all) == 0 {
		return sample{}, errors.New("no message reached a tab within the drain time")
	}
	slices.Sort(all)
	rate := float64(len(all)) / last.Sub(firstMeasured).Seconds()
	if saturate {
		rate = float64(delivered) / lastAny.Sub(start).Seconds()
	}
	return sample{
		Rate:      rate,
		TabKiB:    tabKiB,
		Msgs:      int64(len(all)),
		Offered:   float64(n-warm) / pubEnd.Sub(firstMeasured).Seconds(),
		P50:       percentile(all, 0.50),
		P99:       percentile(all, 0.99),
		Backlog:   backlog,
		Published: confirmed,
		CPU:       cpu0.to(cpu1),
	}, nil
}
