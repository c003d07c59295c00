package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/durablews/durablews/prommetrics"
)

// appMetrics is the demo's GET /metrics: the Publisher's metrics
// (durablews_publisher_*) and the delivery receipts' (durablews_receipts_*:
// receipts read and recorded, fallbacks taken) on a registry of the app's
// own, as a service would serve them (cmd/durablews/OPERATIONS.md).
type appMetrics struct {
	registry  *prometheus.Registry
	publisher *prommetrics.Metrics
}

// newAppMetrics registers the publisher's metrics for topic and the
// receipts metrics of rs.
func newAppMetrics(topic string, rs *receiptsSide) (*appMetrics, error) {
	m := &appMetrics{registry: prometheus.NewRegistry()}
	var err error
	if m.publisher, err = prommetrics.NewMetrics(m.registry, []string{topic}, prommetrics.Options{}); err != nil {
		return nil, err
	}
	if _, err := prommetrics.NewReceiptsMetrics(m.registry, rs.sub, rs.tracker, prommetrics.Options{}); err != nil {
		return nil, err
	}
	return m, nil
}

// handler serves the registry in the Prometheus text format.
func (m *appMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
