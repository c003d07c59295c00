package main

// The receipts scenario (issue 21): the same durablews Publisher, offered
// rate and K Web-STOMP tabs (a durable tab queue each, acking every
// message), once without and once with delivery receipts. With receipts
// each tab sends, after its ACK, receipt batches like the browser client
// (at most 100 ids or 20 ms, whichever first; one STOMP SEND with a
// RECEIPT each, several in flight) to the receipts exchange with routing
// key <userKey>.<tabId> and the body of receipts.EncodeBatch, and the
// service side is a receipts.Subscriber + receipts.Tracker on a durable
// queue: OnReceipt records the time from publish to receipt.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/stomptab"
	"github.com/durablews/durablews/receipts"
)

// The browser client's defaults (web/receipts.js DEFAULTS.receipts):
// a batch goes out when it holds receiptsMaxBatch ids or receiptsFlush
// after its first one, whichever comes first.
const (
	receiptsMaxBatch = 100
	receiptsFlush    = 20 * time.Millisecond
)

func receiptsContenderID(on bool) string {
	if on {
		return "durablews-receipts-on"
	}
	return "durablews-receipts-off"
}

// receiptsScenario is receipts off (the anchor) and on with
// o.ReceiptsTabs tabs, at o.ReceiptsRate msg/s (default: E2ERate
// deliveries/s over all tabs, as the connected-K scenarios).
func receiptsScenario(o *Options) scenarioDef {
	k := o.ReceiptsTabs
	rate := o.ReceiptsRate
	if rate <= 0 {
		// At least 10 messages over warm-up and window, or there is nothing to measure.
		rate = max(o.E2ERate/k, int(math.Ceil(10/(o.E2EWarmup+o.E2EWindow).Seconds())))
	}
	off, on := receiptsContenderID(false), receiptsContenderID(true)
	return scenarioDef{
		name: fmt.Sprintf("receipts-%dtabs", k),
		title: fmt.Sprintf("delivery receipts off vs on: %d msg/s offered to %s over Web-STOMP (%d deliveries/s, acking); on: each tab sends receipt batches (≤ %d ids or %v) to a receipts.Subscriber + Tracker",
			rate, plural(k, "tab"), rate*k, receiptsMaxBatch, receiptsFlush),
		kind: kindReceipts, tabs: k, rate: rate,
		e2e:    []e2eContender{receiptsContender(false), receiptsContender(true)},
		anchor: off,
		targets: []targetDef{
			{num: on, den: off, metric: "rate", label: "confirmed msg/s, receipts on vs off"},
			{num: on, den: off, metric: "p99", label: "end-to-end p99 publish → tab, receipts on vs off"},
		},
	}
}

// receiptsContender is the durablews Publisher (one Publish per message,
// each from its own goroutine, as a request handler would), with or
// without receipts; measureReceipts does the rest.
func receiptsContender(on bool) e2eContender {
	c := durablewsE2E()
	c.id, c.receipts = receiptsContenderID(on), on
	c.name = "durablews Publisher (defaults), tabs ack, no receipts"
	if on {
		c.name = "durablews Publisher (defaults), tabs ack + send receipts, receipts.Tracker"
	}
	return c
}

// receiptTab is one tab of a receipts measurement.
type receiptTab struct {
	tab  *stomptab.Tab
	sub  *stomptab.Subscription
	id   string // tab id, the <tabId> of the routing key
	dest string // /exchange/<receipts exchange>/<userKey>.<tabId>
}

// receiptSender batches one tab's receipts like the browser client and
// sends each batch with Tab.Send, without waiting for one batch's RECEIPT
// before sending the next.
type receiptSender struct {
	t     *receiptTab
	in    chan receipts.Entry
	ended chan struct{}
	sends sync.WaitGroup
	err   firstErr
}

func newReceiptSender(ctx context.Context, t *receiptTab, capacity int) *receiptSender {
	s := &receiptSender{t: t, in: make(chan receipts.Entry, capacity), ended: make(chan struct{})}
	go s.run(ctx)
	return s
}

// run collects entries until in is closed, then sends what is left and
// waits for every SEND's RECEIPT.
func (s *receiptSender) run(ctx context.Context) {
	defer close(s.ended)
	var batch []receipts.Entry
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	flush := func() {
		timer.Stop()
		if len(batch) == 0 {
			return
		}
		body, err := receipts.EncodeBatch(s.t.id, batch)
		batch = nil
		if err != nil {
			s.err.set(err)
			return
		}
		s.sends.Add(1)
		go func() {
			defer s.sends.Done()
			if err := s.t.tab.Send(ctx, s.t.dest, receipts.ContentType, body, [2]string{receipts.Header, "1"}); err != nil && ctx.Err() == nil {
				s.err.set(fmt.Errorf("receipt SEND: %w", err))
			}
		}()
	}
	for {
		select {
		case e, ok := <-s.in:
			if !ok {
				flush()
				s.sends.Wait()
				return
			}
			batch = append(batch, e)
			if len(batch) == 1 {
				timer.Reset(receiptsFlush)
			}
			if len(batch) >= receiptsMaxBatch {
				flush()
			}
		case <-timer.C:
			flush()
		}
	}
}

// receiptsPub publishes with a durablews Publisher, one goroutine per
// message, and keeps the count and the time of the last confirm of the
// measured messages.
type receiptsPub struct {
	p         *durablews.Publisher
	e         *env
	warm      int
	wg        sync.WaitGroup
	err       firstErr
	mu        sync.Mutex
	confirmed int64 // measured messages confirmed
	all       int64 // every message confirmed
	last      time.Time
}

func (d *receiptsPub) send(i int, id string, body []byte) {
	m := message.NewMessage(id, body)
	m.Metadata.Set(durablews.RoutingKeyMetadataKey, d.e.key)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.p.Publish(d.e.exchange, m); err != nil {
			d.err.set(err)
			return
		}
		now := time.Now()
		d.mu.Lock()
		defer d.mu.Unlock()
		d.all++
		if i >= d.warm {
			d.confirmed++
			if now.After(d.last) {
				d.last = now
			}
		}
	}()
}

// receiptLats collects the service side: publish → receipt at the
// Tracker for the measured messages, and how many receipts came at all.
type receiptLats struct {
	prefix   string        // message ids are prefix + index
	start    atomic.Int64  // scheduled time of message 0, unix ns
	interval time.Duration // between scheduled sends
	warm     int
	want     int64 // receipts expected: every message from every tab
	all      chan struct{}

	mu    sync.Mutex
	lats  []time.Duration
	n     int64
	alien int // receipts for ids this measurement did not publish
}

func (l *receiptLats) onReceipt(r receipts.Receipt) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	i, err := strconv.Atoi(strings.TrimPrefix(r.MessageID, l.prefix))
	if !strings.HasPrefix(r.MessageID, l.prefix) || err != nil {
		l.alien++
		return
	}
	if i >= l.warm {
		sched := time.Unix(0, l.start.Load()).Add(time.Duration(i) * l.interval)
		l.lats = append(l.lats, now.Sub(sched))
	}
	l.n++
	if l.n == l.want {
		close(l.all)
	}
}

// measureReceipts opens the tabs (a durable tab queue each, bound to the
// bench exchange) and, with receipts, the receipts exchange and the
// service's Subscriber and Tracker on a durable queue; publishes at
// o.E2ERate for warm-up + window; and records publish → tab for every
// delivery, publish → confirm and, with receipts, publish → receipt at
// the service. Everything it declared is deleted before it returns.
func measureReceipts(ctx context.Context, o *Options, topo *topology, meter *cpuMeter, c e2eContender, tabs int, base *env, key string) (sample, error) {
	e := *base
	e.key = key + ".m"
	binding := key + ".#"
	interval := time.Second / time.Duration(o.E2ERate)
	warm := int(o.E2EWarmup / interval)
	n := warm + int(o.E2EWindow/interval)

	var ts []*receiptTab
	var queues []string
	rx := ""
	defer func() {
		for _, t := range ts {
			_ = t.tab.Close()
		}
		if len(queues) > 0 {
			_ = topo.deleteQueues(queues)
		}
		if rx != "" {
			_ = topo.deleteExchange(rx)
		}
	}()

	lats := &receiptLats{prefix: randomHex(4) + "-", interval: interval, warm: warm, want: int64(n * tabs), all: make(chan struct{})}
	if c.receipts {
		rx = topo.exchange + "-" + key + "-receipts"
		if err := topo.declareExchange(rx, func(ch *amqp.Channel) error { return receipts.DeclareExchange(ch, rx) }); err != nil {
			return sample{}, err
		}
		rq := rx // the service's receipts queue
		topo.track(rq)
		queues = append(queues, rq)
		sub, err := receipts.NewSubscriber(receipts.Config{URL: o.AMQPURL, Exchange: rx, Queue: rq,
			QueueArguments: amqp.Table{"x-expires": int64(leakGuard / time.Millisecond)}}, nil)
		if err != nil {
			return sample{}, err
		}
		defer sub.Close()
		tracker, err := receipts.NewTracker(receipts.TrackerConfig{Subscriber: sub, OnReceipt: lats.onReceipt}, nil)
		if err != nil {
			return sample{}, err
		}
		defer tracker.Close() // before sub.Close
	}
	userKey := randomHex(8)
	for range tabs {
		dctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		tab, err := stomptab.Dial(dctx, stomptab.Options{URL: o.WSURL})
		if err != nil {
			cancel()
			return sample{}, err
		}
		id := stomptab.NewTabID()
		q := stomptab.QueueName(id, "bench")
		topo.track(q)
		queues = append(queues, q)
		sub, err := tab.Subscribe(dctx, stomptab.Sub{Exchange: e.exchange, BindingKey: binding, QueueName: q, Expires: leakGuard})
		cancel()
		if err != nil {
			tab.Drop()
			return sample{}, err
		}
		rk, err := receipts.RoutingKey(userKey, id)
		if err != nil {
			tab.Drop()
			return sample{}, err
		}
		ts = append(ts, &receiptTab{tab: tab, sub: sub, id: id, dest: "/exchange/" + rx + "/" + rk})
	}

	cfg := durablews.NewConfig(e.amqpURL, durablews.Exchange{Name: e.exchange, Kind: durablews.KindTopic})
	p, err := durablews.NewPublisher(cfg, nil)
	if err != nil {
		return sample{}, fmt.Errorf("start: %w", err)
	}
	defer p.Close()
	pub := &receiptsPub{p: p, e: &e, warm: warm}

	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	results := make([]tabResult, len(ts))
	senders := make([]*receiptSender, len(ts))
	var wg sync.WaitGroup
	for t := range ts {
		if c.receipts {
			senders[t] = newReceiptSender(rctx, ts[t], n)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s := senders[t]; s != nil {
				defer close(s.in)
			}
			var afterAck func(stomptab.Message, time.Time)
			if s := senders[t]; s != nil {
				// The browser client: the receipt after the handler and the ACK.
				afterAck = func(m stomptab.Message, at time.Time) {
					s.in <- receipts.Entry{ID: m.ID, Subscription: ts[t].sub.ID(), HandledAt: at}
				}
			}
			results[t].receive(rctx, ts[t].sub, n, warm, afterAck)
		}()
	}

	start := time.Now().Add(20 * time.Millisecond)
	lats.start.Store(start.UnixNano())
	firstMeasured := start.Add(time.Duration(warm) * interval)
	var cpu0 cpuSnap
	for i := range n {
		sched := start.Add(time.Duration(i) * interval)
		if d := time.Until(sched); d > 0 {
			time.Sleep(d)
		}
		if i == warm {
			cpu0 = meter.snap()
		}
		pub.send(i, lats.prefix+strconv.Itoa(i), e2eBody(i, sched, len(e.payload)))
		if ctx.Err() != nil {
			break
		}
	}
	cpu1 := meter.snap()
	if warm == 0 {
		cpu0 = cpu1 // degenerate; only in odd flag combinations
	}
	pubEnd := time.Now()
	pub.wg.Wait()

	// Every delivery, then (with receipts) every receipt at the service,
	// within E2EDrain; then whatever is missing is counted as such.
	drain := time.NewTimer(o.E2EDrain)
	defer drain.Stop()
	tabsDone := make(chan struct{})
	go func() { wg.Wait(); close(tabsDone) }()
	select {
	case <-tabsDone:
	case <-drain.C:
	}
	if c.receipts {
		select {
		case <-lats.all:
		case <-drain.C:
		}
	}
	rcancel()
	<-tabsDone
	var errs []error
	for _, s := range senders {
		if s != nil {
			<-s.ended
			if err := s.err.get(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := pub.err.get(); err != nil {
		return sample{}, fmt.Errorf("publish: %w", err)
	}
	if pub.all != int64(n) {
		return sample{}, fmt.Errorf("publish: %d of %d confirmed", pub.all, n)
	}
	var all []time.Duration
	var last time.Time
	backlog := 0
	for _, r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
		}
		all = append(all, r.lats...)
		if r.last.After(last) {
			last = r.last
		}
		backlog += n - r.got
	}
	if len(errs) > 0 {
		return sample{}, fmt.Errorf("tab: %w", errors.Join(errs...))
	}
	if len(all) == 0 {
		return sample{}, errors.New("no message reached a tab within the drain time")
	}
	slices.Sort(all)
	s := sample{
		Rate:      float64(pub.confirmed) / pub.last.Sub(firstMeasured).Seconds(),
		Msgs:      pub.confirmed,
		Offered:   float64(n-warm) / pubEnd.Sub(firstMeasured).Seconds(),
		Delivered: float64(len(all)) / last.Sub(firstMeasured).Seconds(),
		P50:       percentile(all, 0.50),
		P99:       percentile(all, 0.99),
		Backlog:   backlog,
		Published: pub.all,
		CPU:       cpu0.to(cpu1),
	}
	if c.receipts {
		lats.mu.Lock()
		rl := slices.Clone(lats.lats)
		s.Receipts, s.ReceiptsMissing = int64(len(rl)), int(lats.want-lats.n)
		alien := lats.alien
		lats.mu.Unlock()
		if alien > 0 {
			return sample{}, fmt.Errorf("service: %d receipts for messages this measurement did not publish", alien)
		}
		if len(rl) == 0 {
			return sample{}, errors.New("service: no receipt arrived within the drain time")
		}
		slices.Sort(rl)
		s.RP50, s.RP99 = percentile(rl, 0.50), percentile(rl, 0.99)
	}
	return s, nil
}
