package prommetrics_test

import (
	"log"
	"net/http"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/prommetrics"
	"github.com/durablews/durablews/receipts"
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

// Count the delivery receipts a service reads and the fallbacks it takes.
func ExampleNewReceiptsMetrics() {
	sub, err := receipts.NewSubscriber(receipts.Config{
		URL:   "amqp://guest:guest@127.0.0.1:5672/",
		Queue: "orders.receipts",
	}, watermill.NopLogger{})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	tracker, err := receipts.NewTracker(receipts.TrackerConfig{Subscriber: sub}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tracker.Close()
	if _, err := prommetrics.NewReceiptsMetrics(prometheus.DefaultRegisterer, sub, tracker, prommetrics.Options{}); err != nil {
		log.Fatal(err) // the names are already registered
	}

	http.Handle("/metrics", promhttp.Handler())
	log.Fatal(http.ListenAndServe("127.0.0.1:9090", nil))
}
