package durablews_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
)

// BenchmarkPublish measures confirmed publishing to one durable queue on
// the shared broker, per message (one op = one confirmed message), for
// durablews and, as the anchor in the same run, raw amqp091-go doing the
// same on one channel. It prints a ratio line per shape. Both sides build
// each message inside the loop, as a service would (durablews: Watermill
// message with metadata; raw: amqp.Publishing with the same properties),
// so B/op and allocs/op are per message, construction included.
//
//	go test -run '^$' -bench Publish -benchmem .
//
// The full comparison (watermill-amqp, 16 goroutines, 10 queues, end to
// end, fan-out, CPU accounting) is cmd/durablews-bench (make bench).
func BenchmarkPublish(b *testing.B) {
	br := newBroker(b)
	ex := uniqueName(b, "bench")
	br.exchange(ex, amqp.ExchangeTopic)
	q := br.queue(ex, "bench.#", nil)
	// 256 bytes of JSON, like cmd/durablews-bench's default payload.
	payload := []byte(`{"pad":"` + strings.Repeat("x", 256-len(`{"pad":""}`)) + `"}`)

	perMsg := map[string]float64{} // sub-benchmark -> ns per confirmed message
	run := func(name string, fn func(b *testing.B)) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			start := time.Now()
			fn(b)
			ns := float64(time.Since(start).Nanoseconds()) / float64(b.N)
			b.ReportMetric(1e9/ns, "msg/s")
			perMsg[name] = ns
			_, err := br.Ch.QueuePurge(q, false)
			require.NoError(b, err)
		})
	}
	for _, batch := range []int{1, 100} {
		run(fmt.Sprintf("durablews/batch=%d", batch), func(b *testing.B) {
			cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex, Kind: durablews.KindTopic})
			p, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
			require.NoError(b, err)
			defer p.Close()
			msgs := make([]*message.Message, batch)
			b.ResetTimer()
			for sent := 0; sent < b.N; sent += batch {
				n := min(batch, b.N-sent)
				for i := range n {
					msgs[i] = message.NewMessage(watermill.NewUUID(), payload)
					msgs[i].Metadata.Set(durablews.RoutingKeyMetadataKey, "bench.x")
				}
				if err := p.Publish(ex, msgs[:n]...); err != nil {
					b.Fatal(err)
				}
			}
		})
		run(fmt.Sprintf("amqp091/batch=%d", batch), func(b *testing.B) {
			conn, err := amqp.Dial(amqpURL())
			require.NoError(b, err)
			defer conn.Close()
			ch, err := conn.Channel()
			require.NoError(b, err)
			require.NoError(b, ch.Confirm(false))
			dcs := make([]*amqp.DeferredConfirmation, batch)
			ctx := context.Background()
			b.ResetTimer()
			for sent := 0; sent < b.N; sent += batch {
				n := min(batch, b.N-sent)
				for i := range n {
					// What DefaultMarshaler puts on the wire, built per message.
					dcs[i], err = ch.PublishWithDeferredConfirmWithContext(ctx, ex, "bench.x", false, false, amqp.Publishing{
						Headers:      amqp.Table{durablews.RoutingKeyMetadataKey: "bench.x"},
						ContentType:  durablews.DefaultContentType,
						DeliveryMode: amqp.Persistent,
						MessageId:    watermill.NewUUID(),
						Timestamp:    time.Now(),
						Body:         payload,
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				for _, dc := range dcs[:n] {
					if ok, err := dc.WaitContext(ctx); err != nil || !ok {
						b.Fatalf("not confirmed: ack %v, %v", ok, err)
					}
				}
			}
		})
		d, r := perMsg[fmt.Sprintf("durablews/batch=%d", batch)], perMsg[fmt.Sprintf("amqp091/batch=%d", batch)]
		if d > 0 && r > 0 {
			// Printed, not logged: a parent benchmark's log shows only with -v.
			fmt.Printf("ratio: batch=%d: durablews %.0f msg/s vs raw amqp091-go same shape %.0f msg/s = %.2f\n", batch, 1e9/d, 1e9/r, r/d)
		}
	}
}
