package prommetrics_test

import (
	"log"
	"net/http"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/prommetrics"
)

// Count what a Publisher does and serve it on /metrics.
func ExampleNewMetrics() {
	cfg := durablews.NewConfig("amqp://guest:guest@127.0.0.1:5672/", durablews.Exchange{Name: "events"})
	m, err := prommetrics.NewMetrics(prometheus.DefaultRegisterer, []string{"events"}, prommetrics.Options{
		ConstLabels: prometheus.Labels{"service": "orders"},
	})
	if err != nil {
		log.Fatal(err) // the names are already registered
	}
	cfg.Observer = m
	pub, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	defer m.Track(pub)() // the in-flight gauge

	http.Handle("/metrics", promhttp.Handler())
	log.Fatal(http.ListenAndServe("127.0.0.1:9090", nil))
}
