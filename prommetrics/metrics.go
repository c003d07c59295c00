// Package prommetrics exports what a durablews.Publisher does as
// Prometheus metrics: messages published, confirmed and not confirmed (by
// reason), confirm latency, messages in flight and reconnects. Metrics is
// the durablews.Observer that counts them; nothing is measured unless it
// is set as Config.Observer. ReceiptsMetrics exports what a
// receipts.Subscriber read and a receipts.Tracker recorded, fallbacks
// taken included.
package prommetrics

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/defaults"
)

// OtherTopic is the topic label value of every topic that is not among
// the topics given to NewMetrics, so the label set stays bounded.
const OtherTopic = "other"

// Reasons a message was not confirmed: the values of the reason label of
// durablews_publisher_not_confirmed_total, from the error passed to
// Observer.NotConfirmed (first match wins, in this order).
const (
	ReasonReturned       = "returned"        // ErrUnroutable
	ReasonNacked         = "nacked"          // ErrNacked
	ReasonRefused        = "refused"         // ErrRefused: the broker closed the channel (e.g. 403 access refused)
	ReasonUnknownTopic   = "unknown_topic"   // ErrUnknownTopic: an empty topic, or one not in Config.Exchanges
	ReasonTimeout        = "timeout"         // ErrConfirmTimeout
	ReasonConnectionLost = "connection_lost" // ErrConnectionLost
	ReasonClosed         = "closed"          // ErrPublisherClosed
	ReasonInvalid        = "invalid"         // ErrInvalidMessage
	ReasonContext        = "context"         // the message context was cancelled or timed out
	ReasonNotSent        = "not_sent"        // ErrNotSent for another reason (e.g. another message of the batch was invalid)
	ReasonOther          = "other"           // anything else
)

// DefaultLatencyBuckets are the confirm-latency histogram buckets in
// seconds. Confirms of persistent messages come after RabbitMQ's batched
// fsync (typically a few ms to a few hundred ms); the top buckets catch
// publishes stretched by reconnects and flow control up to
// DefaultConfirmTimeout.
var DefaultLatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Options tune NewMetrics. The zero value gives the documented metric
// names.
type Options struct {
	// Namespace and Subsystem prefix every metric name. Defaults
	// "durablews" and "publisher": durablews_publisher_published_total.
	Namespace, Subsystem string
	// ConstLabels are added to every metric, e.g. {"service": "orders"}.
	ConstLabels prometheus.Labels
	// LatencyBuckets of the confirm-latency histogram, in seconds.
	// Default DefaultLatencyBuckets.
	LatencyBuckets []float64
}

// Metrics are Prometheus metrics for a durablews.Publisher. Metrics is a
// durablews.Observer (set it as Config.Observer) and a
// prometheus.Collector; Track adds the in-flight gauge:
//
//	m, err := prommetrics.NewMetrics(prometheus.DefaultRegisterer, []string{"events"}, prommetrics.Options{})
//	...
//	cfg.Observer = m
//	pub, err := durablews.NewPublisher(cfg, logger)
//	...
//	defer m.Track(pub)()
//
// The metrics (with the default namespace and subsystem; topic is one of
// the topics given to NewMetrics, or "other"):
//
//	durablews_publisher_published_total{topic}            counter   messages that passed validation and were handed to the broker path
//	durablews_publisher_confirmed_total{topic}            counter   messages the broker confirmed (ack, and not returned)
//	durablews_publisher_nacked_total{topic}               counter   messages the broker nacked (ErrNacked)
//	durablews_publisher_returned_total{topic}             counter   messages returned as unroutable (ErrUnroutable; needs Config.Mandatory)
//	durablews_publisher_timed_out_total{topic}            counter   messages with no confirm within Config.ConfirmTimeout (ErrConfirmTimeout)
//	durablews_publisher_not_confirmed_total{topic,reason} counter   every message that was not confirmed, by reason (Reason* constants)
//	durablews_publisher_retried_total{topic,reason}       counter   messages sent again before their Publish ended: reason nacked (Config.RetryNacks) or connection_lost (confirm lost with a channel or the connection)
//	durablews_publisher_reconnects_total                  counter   connections re-established after a loss
//	durablews_publisher_in_flight                         gauge     messages awaiting their confirm, summed over tracked publishers
//	durablews_publisher_confirm_latency_seconds{topic}    histogram time from (last) send to the confirm, confirmed messages only
//
// retried_total counts sends, not messages: a message nacked three times
// and then confirmed adds 3 to it and 1 to confirmed_total.
//
// nacked, returned and timed_out equal not_confirmed_total for their
// reason; they exist so the common alerts need no label matching. Every
// published message ends in confirmed_total or not_confirmed_total; the
// messages of a batch rejected before sending (reason invalid, and
// not_sent for its valid messages) are counted in not_confirmed_total only.
//
// All methods are safe for concurrent use; one Metrics may serve several
// publishers with the same topics.
type Metrics struct {
	topics map[string]*topicMetrics // read-only after NewMetrics
	other  *topicMetrics

	published, confirmed, nacked, returned, timedOut *prometheus.CounterVec
	notConfirmed, retried                            *prometheus.CounterVec
	reconnects                                       prometheus.Counter
	latency                                          *prometheus.HistogramVec
	inFlight                                         prometheus.GaugeFunc

	mu      sync.Mutex
	tracked map[*trackedPublisher]struct{}
}

type trackedPublisher struct{ p interface{ InFlight() int } }

// topicMetrics caches one topic's children so the Observer methods do no
// label hashing on the publishing path.
type topicMetrics struct {
	published, confirmed, nacked, returned, timedOut prometheus.Counter
	notConfirmed                                     map[string]prometheus.Counter
	retriedNacked, retriedLost                       prometheus.Counter
	latency                                          prometheus.Observer
}

var allReasons = []string{ReasonReturned, ReasonNacked, ReasonRefused, ReasonUnknownTopic, ReasonTimeout,
	ReasonConnectionLost, ReasonClosed, ReasonInvalid, ReasonContext, ReasonNotSent, ReasonOther}

var (
	_ durablews.RetryObserver = (*Metrics)(nil)
	_ prometheus.Collector    = (*Metrics)(nil)
)

// NewMetrics returns metrics whose topic label takes topics (the
// publisher's Watermill topics, the keys of its Config.Exchanges) plus
// OtherTopic, and registers them with reg unless reg is nil. Every series
// of those topics exists from the start (at zero), so rates and alerts
// work before the first message. The error is reg's, e.g. when metrics
// with the same names are already registered (use other Options or a
// prometheus.WrapRegistererWith).
func NewMetrics(reg prometheus.Registerer, topics []string, opts Options) (*Metrics, error) {
	defaults.Set(&opts.Namespace, "durablews")
	defaults.Set(&opts.Subsystem, "publisher")
	if len(opts.LatencyBuckets) == 0 {
		opts.LatencyBuckets = DefaultLatencyBuckets
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: opts.Namespace, Subsystem: opts.Subsystem, Name: name, Help: help, ConstLabels: opts.ConstLabels,
		}, labels)
	}
	m := &Metrics{
		published:    counter("published_total", "Messages that passed validation and were handed to the broker path, by topic.", "topic"),
		confirmed:    counter("confirmed_total", "Messages the broker confirmed (acked and not returned), by topic.", "topic"),
		nacked:       counter("nacked_total", "Messages the broker refused with basic.nack (ErrNacked), by topic.", "topic"),
		returned:     counter("returned_total", "Messages returned as unroutable (ErrUnroutable, Config.Mandatory), by topic.", "topic"),
		timedOut:     counter("timed_out_total", "Messages not confirmed within Config.ConfirmTimeout (ErrConfirmTimeout), by topic.", "topic"),
		notConfirmed: counter("not_confirmed_total", "Messages that were not confirmed, by topic and reason.", "topic", "reason"),
		retried:      counter("retried_total", "Messages sent again before their Publish call ended, by topic and reason (nacked, connection_lost).", "topic", "reason"),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: opts.Namespace, Subsystem: opts.Subsystem, Name: "reconnects_total",
			Help: "Connections to the broker re-established after a loss.", ConstLabels: opts.ConstLabels,
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: opts.Namespace, Subsystem: opts.Subsystem, Name: "confirm_latency_seconds",
			Help:    "Time from sending a message (the last time, if republished) to its confirm, by topic.",
			Buckets: opts.LatencyBuckets, ConstLabels: opts.ConstLabels,
		}, []string{"topic"}),
		topics:  make(map[string]*topicMetrics, len(topics)),
		tracked: make(map[*trackedPublisher]struct{}),
	}
	m.inFlight = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: opts.Namespace, Subsystem: opts.Subsystem, Name: "in_flight",
		Help: "Messages awaiting their broker confirm (or a free in-flight slot), summed over the publishers passed to Track.", ConstLabels: opts.ConstLabels,
	}, m.inFlightNow)

	for _, topic := range topics {
		if topic != OtherTopic {
			m.topics[topic] = m.children(topic)
		}
	}
	m.other = m.children(OtherTopic)
	if reg != nil {
		if err := reg.Register(m); err != nil {
			return nil, fmt.Errorf("prommetrics: register: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) children(topic string) *topicMetrics {
	tm := &topicMetrics{
		published:     m.published.WithLabelValues(topic),
		confirmed:     m.confirmed.WithLabelValues(topic),
		nacked:        m.nacked.WithLabelValues(topic),
		returned:      m.returned.WithLabelValues(topic),
		timedOut:      m.timedOut.WithLabelValues(topic),
		notConfirmed:  make(map[string]prometheus.Counter, len(allReasons)),
		retriedNacked: m.retried.WithLabelValues(topic, ReasonNacked),
		retriedLost:   m.retried.WithLabelValues(topic, ReasonConnectionLost),
		latency:       m.latency.WithLabelValues(topic),
	}
	for _, r := range allReasons {
		tm.notConfirmed[r] = m.notConfirmed.WithLabelValues(topic, r)
	}
	return tm
}

func (m *Metrics) topic(topic string) *topicMetrics {
	if tm, ok := m.topics[topic]; ok {
		return tm
	}
	return m.other
}

// Topics returns the topic label values: the configured topics, sorted,
// then OtherTopic.
func (m *Metrics) Topics() []string {
	out := make([]string, 0, len(m.topics)+1)
	for t := range m.topics {
		out = append(out, t)
	}
	sort.Strings(out)
	return append(out, OtherTopic)
}

// Track adds p's InFlight() to the in-flight gauge until untrack is called.
// Call it once per publisher; untracking a closed publisher is optional
// (it reports 0) but frees the reference.
func (m *Metrics) Track(p *durablews.Publisher) (untrack func()) {
	return m.track(p)
}

func (m *Metrics) track(p interface{ InFlight() int }) func() {
	tp := &trackedPublisher{p: p}
	m.mu.Lock()
	m.tracked[tp] = struct{}{}
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.tracked, tp)
		m.mu.Unlock()
	}
}

func (m *Metrics) inFlightNow() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for tp := range m.tracked {
		n += tp.p.InFlight()
	}
	return float64(n)
}

// Published implements durablews.Observer.
func (m *Metrics) Published(topic string, messages int) {
	m.topic(topic).published.Add(float64(messages))
}

// Confirmed implements durablews.Observer.
func (m *Metrics) Confirmed(topic string, latency time.Duration) {
	tm := m.topic(topic)
	tm.confirmed.Inc()
	tm.latency.Observe(latency.Seconds())
}

// NotConfirmed implements durablews.Observer.
func (m *Metrics) NotConfirmed(topic string, err error) {
	tm := m.topic(topic)
	reason := NotConfirmedReason(err)
	tm.notConfirmed[reason].Inc()
	switch reason {
	case ReasonNacked:
		tm.nacked.Inc()
	case ReasonReturned:
		tm.returned.Inc()
	case ReasonTimeout:
		tm.timedOut.Inc()
	}
}

// Retried implements durablews.RetryObserver.
func (m *Metrics) Retried(topic string, messages int, reason error) {
	tm := m.topic(topic)
	if errors.Is(reason, durablews.ErrNacked) {
		tm.retriedNacked.Add(float64(messages))
	} else {
		tm.retriedLost.Add(float64(messages))
	}
}

// Reconnected implements durablews.Observer.
func (m *Metrics) Reconnected(string) { m.reconnects.Inc() }

// NotConfirmedReason maps a per-message error (as passed to
// Observer.NotConfirmed or found in PublishError.Failed) to one of the
// Reason* constants.
func NotConfirmedReason(err error) string {
	switch {
	case errors.Is(err, durablews.ErrUnroutable):
		return ReasonReturned
	case errors.Is(err, durablews.ErrNacked):
		return ReasonNacked
	case errors.Is(err, durablews.ErrRefused):
		return ReasonRefused
	case errors.Is(err, durablews.ErrUnknownTopic):
		return ReasonUnknownTopic
	case errors.Is(err, durablews.ErrConfirmTimeout):
		return ReasonTimeout
	case errors.Is(err, durablews.ErrConnectionLost):
		return ReasonConnectionLost
	case errors.Is(err, durablews.ErrPublisherClosed):
		return ReasonClosed
	case errors.Is(err, durablews.ErrInvalidMessage):
		return ReasonInvalid
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ReasonContext
	case errors.Is(err, durablews.ErrNotSent):
		return ReasonNotSent
	default:
		return ReasonOther
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.published, m.confirmed, m.nacked, m.returned, m.timedOut,
		m.notConfirmed, m.retried, m.reconnects, m.inFlight, m.latency}
}
