package prommetrics_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/prommetrics"
)

// metricsPublisher wires NewMetrics the way the docs say: a registry of
// its own, the publisher's topics, Observer, Track.
func metricsPublisher(t *testing.T, cfg durablews.Config) (*durablews.Publisher, *prommetrics.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := prommetrics.NewMetrics(reg, slices.Collect(maps.Keys(cfg.Exchanges)), prommetrics.Options{})
	require.NoError(t, err)
	cfg.Observer = m
	pub := brokertest.NewPublisher(t, cfg)
	t.Cleanup(m.Track(pub))
	return pub, m, reg
}

// value returns the value of the counter or gauge series name{labels}, or
// the sample count of a histogram; 0 if it does not exist.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, mt := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range mt.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return mt.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return mt.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func msgs(key string, n int) []*message.Message {
	out := make([]*message.Message, n)
	for i := range out {
		out[i] = brokertest.NewMsg(key)
	}
	return out
}

func TestMetrics_CountsMatchPublishedConfirmedNackedReturned(t *testing.T) {
	b := brokertest.New(t)
	ex := brokertest.UniqueName("metrics")
	b.Exchange(ex, "topic")
	b.Queue(ex, "ok.#", nil)
	// A full reject-publish queue makes the broker nack: 1 fits, the rest is nacked.
	b.Queue(ex, "full.#", amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"})

	cfg := durablews.NewConfig(brokertest.AMQPURL(), durablews.Exchange{Name: ex})
	cfg.Mandatory = true // so that a key no queue is bound for is returned
	pub, _, reg := metricsPublisher(t, cfg)

	const confirmed, full, unroutable = 25, 4, 3
	require.NoError(t, pub.Publish(ex, msgs("ok.1", confirmed)...))

	err := pub.Publish(ex, msgs("full.1", full)...)
	require.ErrorIs(t, err, durablews.ErrNacked)
	var pe *durablews.PublishError
	require.ErrorAs(t, err, &pe)
	require.Len(t, pe.Confirmed, 1, "x-max-length 1 takes exactly one message")
	require.Len(t, pe.Failed, full-1)

	err = pub.Publish(ex, msgs("nobody.home", unroutable)...)
	require.ErrorIs(t, err, durablews.ErrUnroutable)

	// An invalid batch (no routing key) is never published: only not_confirmed counts it.
	err = pub.Publish(ex, brokertest.NewMsg("ok.2"), brokertest.NewMsg(""))
	require.ErrorIs(t, err, durablews.ErrInvalidMessage)

	total := float64(confirmed + full + unroutable)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"durablews_publisher_published_total", []string{"topic", ex}, total},
		{"durablews_publisher_confirmed_total", []string{"topic", ex}, confirmed + 1},
		{"durablews_publisher_nacked_total", []string{"topic", ex}, full - 1},
		{"durablews_publisher_returned_total", []string{"topic", ex}, unroutable},
		{"durablews_publisher_timed_out_total", []string{"topic", ex}, 0},
		{"durablews_publisher_not_confirmed_total", []string{"topic", ex, "reason", "nacked"}, full - 1},
		{"durablews_publisher_not_confirmed_total", []string{"topic", ex, "reason", "returned"}, unroutable},
		{"durablews_publisher_not_confirmed_total", []string{"topic", ex, "reason", "invalid"}, 1},
		{"durablews_publisher_not_confirmed_total", []string{"topic", ex, "reason", "not_sent"}, 1},
		{"durablews_publisher_confirm_latency_seconds", []string{"topic", ex}, confirmed + 1},
		{"durablews_publisher_in_flight", nil, 0},
		{"durablews_publisher_reconnects_total", nil, 0},
		{"durablews_publisher_published_total", []string{"topic", "other"}, 0},
	} {
		assert.Equal(t, c.want, value(t, reg, c.name, c.labels...), "%s%v", c.name, c.labels)
	}
	// published = confirmed + nacked + returned when nothing is in flight.
	assert.Equal(t, value(t, reg, "durablews_publisher_published_total", "topic", ex),
		value(t, reg, "durablews_publisher_confirmed_total", "topic", ex)+
			value(t, reg, "durablews_publisher_nacked_total", "topic", ex)+
			value(t, reg, "durablews_publisher_returned_total", "topic", ex))
}

// A stalled connection: the in-flight gauge shows the waiting messages,
// they time out, and after the connection is cut the publisher reconnects.
// With Config.RetryNacks every nacked send is counted in retried_total
// (reason nacked); the message counts once, in not_confirmed_total, when
// ConfirmTimeout ends the retries.
func TestMetrics_RetriedCountsNackRetries(t *testing.T) {
	b := brokertest.New(t)
	ex := brokertest.UniqueName("metrics-retry")
	b.Exchange(ex, "topic")
	b.Queue(ex, "#", amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"})

	cfg := durablews.NewConfig(brokertest.AMQPURL(), durablews.Exchange{Name: ex})
	cfg.RetryNacks = true
	cfg.ConfirmTimeout = time.Second
	pub, _, reg := metricsPublisher(t, cfg)

	err := pub.Publish(ex, msgs("k", 3)...)
	var pe *durablews.PublishError
	require.ErrorAs(t, err, &pe)
	require.Len(t, pe.Failed, 2, "the queue takes one")
	assert.Greater(t, value(t, reg, "durablews_publisher_retried_total", "topic", ex, "reason", prommetrics.ReasonNacked), float64(2))
	assert.Zero(t, value(t, reg, "durablews_publisher_retried_total", "topic", ex, "reason", prommetrics.ReasonConnectionLost))
	assert.Equal(t, float64(2), value(t, reg, "durablews_publisher_not_confirmed_total", "topic", ex, "reason", prommetrics.ReasonNacked)+
		value(t, reg, "durablews_publisher_not_confirmed_total", "topic", ex, "reason", prommetrics.ReasonTimeout))
	assert.Equal(t, float64(1), value(t, reg, "durablews_publisher_confirmed_total", "topic", ex))
}

func TestMetrics_InFlightTimeoutsAndReconnects(t *testing.T) {
	b := brokertest.New(t)
	ex := brokertest.UniqueName("metrics-stall")
	b.Exchange(ex, "topic")
	b.Queue(ex, "#", nil)

	proxy, proxiedURL := brokertest.ProxiedAMQP(t)
	cfg := durablews.NewConfig(proxiedURL, durablews.Exchange{Name: ex})
	// Long enough that the gauge is certainly seen before the timeout, even on a loaded CI host.
	cfg.ConfirmTimeout = 4 * time.Second
	cfg.Reconnect = durablews.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Multiplier: 2}
	pub, _, reg := metricsPublisher(t, cfg)
	require.NoError(t, pub.Publish(ex, brokertest.NewMsg("a")), "warm up: exchange declared on this connection")

	proxy.Stall(true)
	const n = 7
	done := make(chan error, 1)
	go func() { done <- pub.Publish(ex, msgs("a", n)...) }()
	require.Eventually(t, func() bool {
		return value(t, reg, "durablews_publisher_in_flight") == n
	}, 3*time.Second, 10*time.Millisecond, "in-flight gauge while the confirms are stalled")
	err := <-done
	require.ErrorIs(t, err, durablews.ErrConfirmTimeout)
	assert.Equal(t, float64(n), value(t, reg, "durablews_publisher_timed_out_total", "topic", ex))
	assert.Equal(t, float64(n), value(t, reg, "durablews_publisher_not_confirmed_total", "topic", ex, "reason", "timeout"))
	assert.Equal(t, float64(0), value(t, reg, "durablews_publisher_in_flight"))

	proxy.CutAll()
	proxy.Stall(false)
	require.Eventually(t, func() bool {
		return value(t, reg, "durablews_publisher_reconnects_total") >= 1
	}, 10*time.Second, 20*time.Millisecond, "reconnects_total after the connection was cut")
	require.NoError(t, pub.Publish(ex, brokertest.NewMsg("a")))
	assert.Equal(t, float64(2), value(t, reg, "durablews_publisher_confirmed_total", "topic", ex))
	assert.Equal(t, float64(n+2), value(t, reg, "durablews_publisher_published_total", "topic", ex))
}

func TestMetrics_TopicLabelIsBoundedAndNamesAreLintClean(t *testing.T) {
	cfg := durablews.NewConfig("amqp://guest:guest@127.0.0.1:5672/",
		durablews.Exchange{Name: "events"}, durablews.Exchange{Name: "alerts", Kind: durablews.KindFanout})
	m, err := prommetrics.NewMetrics(nil, slices.Collect(maps.Keys(cfg.Exchanges)), prommetrics.Options{ConstLabels: prometheus.Labels{"service": "test"}})
	require.NoError(t, err)
	require.Equal(t, []string{"alerts", "events", "other"}, m.Topics())

	for i := range 100 {
		topic := fmt.Sprintf("dynamic-%d", i)
		m.Published(topic, 1)
		m.NotConfirmed(topic, fmt.Errorf("wrapped: %w", durablews.ErrNacked))
	}
	m.Published("events", 2)
	m.Confirmed("events", 3*time.Millisecond)
	m.NotConfirmed("events", context.Canceled)
	m.Reconnected("amqp://x")

	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(m))
	_, err = prommetrics.NewMetrics(reg, nil, prommetrics.Options{})
	assert.ErrorContains(t, err, "prommetrics: register", "the same names twice in one registry")
	assert.Equal(t, float64(100), value(t, reg, "durablews_publisher_published_total", "topic", "other"))
	assert.Equal(t, float64(100), value(t, reg, "durablews_publisher_nacked_total", "topic", "other"))
	assert.Equal(t, float64(2), value(t, reg, "durablews_publisher_published_total", "topic", "events"))
	assert.Equal(t, float64(1), value(t, reg, "durablews_publisher_not_confirmed_total", "topic", "events", "reason", "context"))
	assert.Equal(t, float64(1), value(t, reg, "durablews_publisher_reconnects_total", "service", "test"))
	// 3 topics, one series each, no matter how many topics were seen.
	n, err := testutil.GatherAndCount(reg, "durablews_publisher_published_total")
	require.NoError(t, err)
	assert.Equal(t, 3, n)

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	assert.Empty(t, problems)

	names := map[string]bool{}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{
		"durablews_publisher_published_total", "durablews_publisher_confirmed_total",
		"durablews_publisher_nacked_total", "durablews_publisher_returned_total",
		"durablews_publisher_timed_out_total", "durablews_publisher_not_confirmed_total",
		"durablews_publisher_reconnects_total", "durablews_publisher_in_flight",
		"durablews_publisher_confirm_latency_seconds",
	} {
		assert.True(t, names[want], "metric %s is documented but not exported", want)
	}
}

func TestMetrics_NotConfirmedReason(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w (312 NO_ROUTE)", durablews.ErrUnroutable), prommetrics.ReasonReturned},
		{durablews.ErrNacked, prommetrics.ReasonNacked},
		{fmt.Errorf("%w: %w", durablews.ErrRefused, errors.New("403 ACCESS_REFUSED")), prommetrics.ReasonRefused},
		{fmt.Errorf("%w: %w: \"nosuch\"", durablews.ErrNotSent, durablews.ErrUnknownTopic), prommetrics.ReasonUnknownTopic},
		{durablews.ErrConfirmTimeout, prommetrics.ReasonTimeout},
		{fmt.Errorf("%w: %w before it could be sent", durablews.ErrNotSent, durablews.ErrConfirmTimeout), prommetrics.ReasonTimeout},
		{fmt.Errorf("%w: reconnecting", durablews.ErrConnectionLost), prommetrics.ReasonConnectionLost},
		{durablews.ErrPublisherClosed, prommetrics.ReasonClosed},
		{fmt.Errorf("%w: bad key", durablews.ErrInvalidMessage), prommetrics.ReasonInvalid},
		{fmt.Errorf("%w: message context done before sending: %w", durablews.ErrNotSent, context.Canceled), prommetrics.ReasonContext},
		{context.DeadlineExceeded, prommetrics.ReasonContext},
		{fmt.Errorf("%w: another message is invalid", durablews.ErrNotSent), prommetrics.ReasonNotSent},
		{errors.New("boom"), prommetrics.ReasonOther},
	} {
		assert.Equal(t, c.want, prommetrics.NotConfirmedReason(c.err), "%v", c.err)
	}
}
