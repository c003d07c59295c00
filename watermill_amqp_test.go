package durablews_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v2/pkg/amqp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
)

// A watermill-amqp subscriber built from the preset reads exactly what the
// durablews Publisher wrote: same exchange, UUID, metadata and payload.
func TestWatermillAMQPConfig_SubscriberReadsPublisherMessages(t *testing.T) {
	ex := uniqueName(t, "wm")
	fan := uniqueName(t, "wmfan")
	b := newBroker(t)
	t.Cleanup(func() { b.deleteExchange(ex); b.deleteExchange(fan) })
	cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex}, durablews.Exchange{Name: fan, Kind: durablews.KindFanout})
	queue := uniqueName(t, "wmq")
	wcfg := cfg.WatermillAMQPConfig(
		func(topic string) string { return queue + "-" + topic },
		func(topic string) string { return "customer.7.#" },
	)
	assert.True(t, wcfg.Publish.ConfirmDelivery)
	assert.True(t, wcfg.Exchange.Durable)
	assert.True(t, wcfg.Queue.Durable)

	sub, err := wamqp.NewSubscriber(wcfg, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = sub.Close()
		if ch, err := b.Conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(queue+"-"+ex, false, false, false)
			_, _ = ch.QueueDelete(queue+"-"+fan, false, false, false)
			_ = ch.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, ex)
	require.NoError(t, err)
	fanMsgs, err := sub.Subscribe(ctx, fan)
	require.NoError(t, err)

	p := newPublisher(t, cfg)
	other := newMsg("customer.8.x")
	want := newMsg("customer.7.order_created")
	want.Metadata.Set("correlation_id", "c-9")
	require.NoError(t, p.Publish(ex, other, want))
	require.NoError(t, p.Publish(fan, newMsg("")))

	select {
	case got := <-msgs:
		assert.Equal(t, want.UUID, got.UUID)
		assert.Equal(t, want.Metadata, got.Metadata)
		assert.Equal(t, want.Payload, got.Payload)
		got.Ack()
	case <-ctx.Done():
		t.Fatal("the watermill-amqp subscriber received nothing")
	}
	select {
	case got := <-fanMsgs:
		got.Ack()
	case <-ctx.Done():
		t.Fatal("nothing from the fanout exchange")
	}
	select {
	case got := <-msgs:
		t.Fatalf("binding key was not applied: got %s", got.Metadata)
	case <-time.After(300 * time.Millisecond):
	}
}

// With Config.Mandatory every publish carries PublishTokenHeader, a string,
// so a watermill-amqp subscriber with watermill-amqp's own DefaultMarshaler
// (which refuses headers that are not strings) still reads it; forwarding
// what it read through durablews.DefaultMarshaler does not copy the stale
// token.
func TestWatermillAMQPConfig_SubscriberReadsMandatoryPublishes(t *testing.T) {
	ex := uniqueName(t, "wmm")
	b := newBroker(t)
	t.Cleanup(func() { b.deleteExchange(ex) })
	cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex})
	cfg.Mandatory = true
	queue := uniqueName(t, "wmmq")
	wcfg := cfg.WatermillAMQPConfig(
		func(topic string) string { return queue },
		func(topic string) string { return "customer.#" },
	)
	wcfg.Marshaler = wamqp.DefaultMarshaler{} // the preset's is durablews.DefaultMarshaler, which leaves the token out
	sub, err := wamqp.NewSubscriber(wcfg, watermill.NopLogger{})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = sub.Close()
		if ch, err := b.Conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(queue, false, false, false)
			_ = ch.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, ex)
	require.NoError(t, err)

	p := newPublisher(t, cfg)
	want := newMsg("customer.7.order_created")
	require.NoError(t, p.Publish(ex, want))
	select {
	case got := <-msgs:
		assert.Equal(t, want.UUID, got.UUID)
		assert.NotEmpty(t, got.Metadata.Get(durablews.PublishTokenHeader), "the token reaches consumers as a string header")
		delete(got.Metadata, durablews.PublishTokenHeader)
		assert.Equal(t, want.Metadata, got.Metadata)
		got.Ack()

		got.Metadata.Set(durablews.PublishTokenHeader, "17")
		pub, err := durablews.DefaultMarshaler{}.Marshal(got)
		require.NoError(t, err)
		assert.NotContains(t, pub.Headers, durablews.PublishTokenHeader, "a forwarded message does not carry the old token")
	case <-ctx.Done():
		t.Fatal("the watermill-amqp subscriber received nothing")
	}
}
