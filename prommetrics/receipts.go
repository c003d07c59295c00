package prommetrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/durablews/durablews/internal/defaults"
	"github.com/durablews/durablews/receipts"
)

// ReceiptsMetrics exports what a receipts.Subscriber read and what a
// receipts.Tracker recorded as Prometheus metrics. It reads their Stats at
// each scrape, so it costs nothing between scrapes:
//
//	sub, err := receipts.NewSubscriber(subCfg, logger)
//	...
//	tracker, err := receipts.NewTracker(receipts.TrackerConfig{Subscriber: sub}, logger)
//	...
//	_, err = prommetrics.NewReceiptsMetrics(prometheus.DefaultRegisterer, sub, tracker, prommetrics.Options{})
//
// The metrics (with the default namespace and subsystem; the subscriber's
// with a Subscriber, the tracker's with a Tracker):
//
//	durablews_receipts_batches_total               counter  receipt batches the Subscriber read (a redelivered batch counts again)
//	durablews_receipts_received_total              counter  receipts of accepted batches the Subscriber handed on
//	durablews_receipts_refused_batches_total       counter  batches refused as malformed or naming another tab (logged, dropped)
//	durablews_receipts_recorded_total              counter  new (message id, tab id) receipts the Tracker recorded
//	durablews_receipts_duplicates_total            counter  receipts the Tracker dropped as already kept
//	durablews_receipts_expectations_met_total      counter  Expect/ExpectUser calls a receipt settled
//	durablews_receipts_expectations_missed_total   counter  Expect/ExpectUser calls whose onMissing ran: the fallbacks taken
//	durablews_receipts_kept                        gauge    receipts the Tracker keeps now
//
// Alert on expectations_missed_total (users who did not see an event in
// time) and on refused_batches_total (a client sending what it should not).
type ReceiptsMetrics struct {
	collectors []prometheus.Collector
}

var _ prometheus.Collector = (*ReceiptsMetrics)(nil)

// NewReceiptsMetrics returns the metrics of sub and tracker (either may be
// nil, not both) and registers them with reg unless reg is nil. Options'
// Subsystem defaults to "receipts" here; LatencyBuckets is not used. The
// error is reg's, e.g. when metrics with the same names are already
// registered.
func NewReceiptsMetrics(reg prometheus.Registerer, sub *receipts.Subscriber, tracker *receipts.Tracker, opts Options) (*ReceiptsMetrics, error) {
	if sub == nil && tracker == nil {
		return nil, errors.New("prommetrics: NewReceiptsMetrics needs a receipts.Subscriber, a receipts.Tracker or both")
	}
	defaults.Set(&opts.Namespace, "durablews")
	defaults.Set(&opts.Subsystem, "receipts")
	m := &ReceiptsMetrics{}
	counter := func(name, help string, value func() float64) {
		m.collectors = append(m.collectors, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: opts.Namespace, Subsystem: opts.Subsystem, Name: name, Help: help, ConstLabels: opts.ConstLabels,
		}, value))
	}
	if sub != nil {
		counter("batches_total", "Receipt batches the Subscriber read, refused ones included (a redelivered batch counts again).",
			func() float64 { return float64(sub.Stats().Batches) })
		counter("received_total", "Receipts of accepted batches the Subscriber handed on (again when a batch is redelivered).",
			func() float64 { return float64(sub.Stats().Receipts) })
		counter("refused_batches_total", "Receipt batches refused as malformed or naming another tab than their routing key (logged and dropped).",
			func() float64 { return float64(sub.Stats().Refused) })
	}
	if tracker != nil {
		counter("recorded_total", "New receipts the Tracker recorded: (message id, tab id) pairs it did not keep yet.",
			func() float64 { return float64(tracker.Stats().Receipts) })
		counter("duplicates_total", "Receipts the Tracker dropped because the same message id and tab id was still kept.",
			func() float64 { return float64(tracker.Stats().Duplicates) })
		counter("expectations_met_total", "Tracker.Expect and ExpectUser calls a receipt settled.",
			func() float64 { return float64(tracker.Stats().Met) })
		counter("expectations_missed_total", "Tracker.Expect and ExpectUser calls whose onMissing ran: the fallbacks taken.",
			func() float64 { return float64(tracker.Stats().Missed) })
		m.collectors = append(m.collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: opts.Namespace, Subsystem: opts.Subsystem, Name: "kept",
			Help: "Receipts the Tracker keeps now (bounded by TrackerConfig.Retention and MaxEntries).", ConstLabels: opts.ConstLabels,
		}, func() float64 { return float64(tracker.Stats().Kept) }))
	}
	if reg != nil {
		if err := reg.Register(m); err != nil {
			return nil, fmt.Errorf("prommetrics: register receipts metrics: %w", err)
		}
	}
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *ReceiptsMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *ReceiptsMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors {
		c.Collect(ch)
	}
}
