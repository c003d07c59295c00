package broadcast_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/broadcast"
	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/stomptab"
)

// The shared broker, as every other test package finds it (DURABLEWS_AMQP_URL overrides).
var sharedAMQP = brokertest.AMQPURL()

// env is a broker with one exchange and the streams a test declared, all
// deleted at cleanup.
type env struct {
	t    *testing.T
	url  string
	conn *amqp.Connection
	ex   string
}

func newEnv(t *testing.T, url string) *env {
	t.Helper()
	conn, err := amqp.Dial(url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	e := &env{t: t, url: url, conn: conn, ex: stomptab.UniqueName("broadcast-test")}
	e.do(func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare(e.ex, amqp.ExchangeTopic, true, false, false, false, nil)
	})
	t.Cleanup(func() { e.tryDo(func(ch *amqp.Channel) error { return ch.ExchangeDelete(e.ex, false, false) }) })
	return e
}

func (e *env) tryDo(f func(*amqp.Channel) error) error {
	ch, err := e.conn.Channel()
	if err != nil {
		return err
	}
	defer ch.Close()
	return f(ch)
}

func (e *env) do(f func(*amqp.Channel) error) {
	e.t.Helper()
	require.NoError(e.t, e.tryDo(f))
}

// stream declares a stream bound to the env's exchange with "#" and
// deletes it at cleanup.
func (e *env) stream(cfg broadcast.Config) broadcast.Config {
	e.t.Helper()
	if cfg.Stream == "" {
		cfg.Stream = stomptab.UniqueName("broadcast-test-stream")
	}
	cfg.Exchange = e.ex
	e.t.Cleanup(func() {
		if cfg.MaxSegmentSizeBytes > 0 {
			// Tiny segments: let queued retention evaluations finish
			// first (see retention_test.go: on 3.10.8 one for a deleted
			// stream crashes osiris_retention).
			if _, waited, ok, err := e.settleRetention(cfg.Stream); !ok {
				e.t.Logf("stream %s: retention did not settle before the delete (waited %v): %v", cfg.Stream, waited.Round(time.Millisecond), err)
			}
		}
		e.tryDo(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(cfg.Stream, false, false, false); return err })
	})
	require.NoError(e.t, broadcast.Declare(ctxT(e.t, 30*time.Second), e.conn, cfg))
	return cfg
}

func (e *env) publisher() *durablews.Publisher {
	e.t.Helper()
	return e.publisherWith(func(*durablews.Config) {})
}

// publisherWith is publisher with its config changed by configure.
func (e *env) publisherWith(configure func(*durablews.Config)) *durablews.Publisher {
	e.t.Helper()
	cfg := durablews.NewConfig(e.url, durablews.Exchange{Name: e.ex, Passive: true})
	cfg.ConfirmTimeout = 5 * time.Second
	cfg.Reconnect = durablews.Backoff{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond, Multiplier: 2}
	configure(&cfg)
	pub, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = pub.Close() })
	return pub
}

// batch returns n messages with a body of payload bytes on routing key key.
func batch(key string, n, payload int) []*message.Message {
	msgs := make([]*message.Message, n)
	for i := range msgs {
		body := fmt.Appendf(nil, `{"i":%d,"pad":"`, i)
		for len(body) < payload-2 {
			body = append(body, 'x')
		}
		msgs[i] = message.NewMessage(watermill.NewUUID(), append(body, `"}`...))
		msgs[i].Metadata.Set(durablews.RoutingKeyMetadataKey, key)
	}
	return msgs
}

func uuids(msgs []*message.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.UUID
	}
	return ids
}

// publish publishes n messages of payload bytes in batches of per and
// requires every confirm; it returns their ids in publish order.
func (e *env) publish(pub *durablews.Publisher, key string, n, per, payload int) []string {
	e.t.Helper()
	var ids []string
	for n > 0 {
		b := batch(key, min(per, n), payload)
		require.NoError(e.t, pub.Publish(e.ex, b...))
		ids = append(ids, uuids(b)...)
		n -= len(b)
	}
	return ids
}

// confirmedOf is the confirmed part of a Publish call's outcome.
func confirmedOf(t *testing.T, b []*message.Message, err error) []string {
	if err == nil {
		return uuids(b)
	}
	var pe *durablews.PublishError
	if !errors.As(err, &pe) {
		t.Errorf("Publish returned a non-PublishError: %v", err)
		return nil
	}
	return pe.Confirmed
}

// readAMQP reads the stream over AMQP from offset spec (e.g. "first",
// int64 offset) until it has n messages and returns their offsets and ids.
func (e *env) readAMQP(stream string, spec any, n int) (offsets []int64, ids []string) {
	e.t.Helper()
	offsets, ids = e.consume(stream, spec, n, 30*time.Second)
	if len(ids) < n {
		e.t.Fatalf("read %d of %d messages of stream %s from %v", len(ids), n, stream, spec)
	}
	return offsets, ids
}

// readAll reads the whole stream over AMQP, until no delivery came for 2 s.
func (e *env) readAll(stream string) (offsets []int64, ids []string) {
	e.t.Helper()
	return e.consume(stream, "first", math.MaxInt, 2*time.Second)
}

// consume reads up to n messages from offset spec, acking each, and stops
// early when no delivery comes for idle.
func (e *env) consume(stream string, spec any, n int, idle time.Duration) (offsets []int64, ids []string) {
	e.t.Helper()
	ch, err := e.conn.Channel()
	require.NoError(e.t, err)
	defer ch.Close()
	require.NoError(e.t, ch.Qos(500, 0, false))
	ds, err := ch.Consume(stream, "", false, false, false, false, amqp.Table{"x-stream-offset": spec})
	require.NoError(e.t, err)
	for len(ids) < n {
		select {
		case d := <-ds:
			off, err := broadcast.DeliveryOffset(d.Headers)
			require.NoError(e.t, err)
			offsets = append(offsets, off)
			ids = append(ids, d.MessageId)
			require.NoError(e.t, d.Ack(false))
		case <-time.After(idle):
			return offsets, ids
		}
	}
	return offsets, ids
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func dialTab(t *testing.T, url string) *stomptab.Tab {
	t.Helper()
	tab, err := stomptab.Dial(ctxT(t, 10*time.Second), stomptab.Options{URL: url})
	require.NoError(t, err)
	t.Cleanup(tab.Drop)
	return tab
}

func itoa(i int64) string { return strconv.FormatInt(i, 10) }
