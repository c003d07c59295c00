package durablews_test

import (
	"strings"
	"testing"
	"time"

	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v2/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
)

// deliveryOf is what a consumer receives for a publishing, minus broker
// fields the marshaler does not read.
func deliveryOf(p amqp.Publishing) amqp.Delivery {
	return amqp.Delivery{
		Headers: p.Headers, ContentType: p.ContentType, DeliveryMode: p.DeliveryMode,
		CorrelationId: p.CorrelationId, MessageId: p.MessageId, Timestamp: p.Timestamp, Body: p.Body,
	}
}

func TestMarshaler_Marshal(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	m := durablews.DefaultMarshaler{Now: func() time.Time { return now }}
	msg := message.NewMessage("uuid-1", []byte(`{"a":1}`))
	msg.Metadata.Set("routing_key", "customer.1.x")
	msg.Metadata.Set("correlation_id", "c-1")

	p, err := m.Marshal(msg)
	require.NoError(t, err)
	assert.Equal(t, uint8(amqp.Persistent), p.DeliveryMode)
	assert.Equal(t, "uuid-1", p.MessageId)
	assert.Equal(t, "application/json", p.ContentType)
	assert.Equal(t, "c-1", p.CorrelationId)
	assert.Equal(t, now, p.Timestamp)
	assert.Equal(t, amqp.Table{"routing_key": "customer.1.x", "correlation_id": "c-1", "_watermill_message_uuid": "uuid-1"}, p.Headers)
	for k, v := range p.Headers {
		_, isString := v.(string)
		assert.True(t, isString, "header %s must be a string to reach STOMP clients", k)
	}

	msg.Metadata.Set(durablews.ContentTypeMetadataKey, "text/plain; charset=utf-8")
	p, err = m.Marshal(msg)
	require.NoError(t, err)
	assert.Equal(t, "text/plain; charset=utf-8", p.ContentType)
}

func TestMarshaler_RejectsWhatAMQPCannotCarry(t *testing.T) {
	m := durablews.DefaultMarshaler{}
	_, err := m.Marshal(nil)
	assert.ErrorContains(t, err, "nil message")

	_, err = m.Marshal(message.NewMessage("", nil))
	assert.ErrorContains(t, err, "message UUID is empty")

	_, err = m.Marshal(message.NewMessage(strings.Repeat("u", 256), nil))
	assert.ErrorContains(t, err, "over the AMQP limit of 255")

	msg := message.NewMessage("id", nil)
	msg.Metadata.Set(strings.Repeat("k", 256), "v")
	_, err = m.Marshal(msg)
	assert.ErrorContains(t, err, "over the AMQP limit")

	msg = message.NewMessage("id", nil)
	msg.Metadata.Set("", "v")
	_, err = m.Marshal(msg)
	assert.ErrorContains(t, err, "metadata key is empty")

	msg = message.NewMessage("id", nil)
	msg.Metadata.Set("_watermill_message_uuid", "other-id")
	_, err = m.Marshal(msg)
	assert.ErrorContains(t, err, `metadata key "_watermill_message_uuid" is reserved`)
}

// A watermill-amqp consumer with its DefaultMarshaler reads the UUID and
// metadata durablews wrote; durablews reads what watermill-amqp wrote.
func TestMarshaler_InteropWithWatermillAMQPDefaultMarshaler(t *testing.T) {
	msg := message.NewMessage("uuid-2", []byte(`{"b":2}`))
	msg.Metadata.Set("routing_key", "customer.2.x")
	msg.Metadata.Set("correlation_id", "c-2")

	pub, err := durablews.DefaultMarshaler{}.Marshal(msg)
	require.NoError(t, err)
	got, err := wamqp.DefaultMarshaler{}.Unmarshal(deliveryOf(pub))
	require.NoError(t, err)
	assert.Equal(t, "uuid-2", got.UUID)
	assert.Equal(t, msg.Metadata, got.Metadata)
	assert.Equal(t, msg.Payload, got.Payload)

	pub, err = wamqp.DefaultMarshaler{}.Marshal(msg)
	require.NoError(t, err)
	got, err = durablews.DefaultMarshaler{}.Unmarshal(deliveryOf(pub))
	require.NoError(t, err)
	assert.Equal(t, "uuid-2", got.UUID)
	assert.Equal(t, msg.Metadata, got.Metadata)
}

func TestMarshaler_UnmarshalReadsWatermillAMQPProducers(t *testing.T) {
	d := amqp.Delivery{
		Headers: amqp.Table{"_watermill_message_uuid": "w-1", "n": int32(7), "s": "x", durablews.PublishTokenHeader: "3"},
		Body:    []byte("p"),
	}
	msg, err := durablews.DefaultMarshaler{}.Unmarshal(d)
	require.NoError(t, err)
	assert.Equal(t, "w-1", msg.UUID)
	assert.Equal(t, message.Metadata{"n": "7", "s": "x"}, msg.Metadata)
}

func FuzzMarshalerRoundTrip(f *testing.F) {
	f.Add("8c4e0f1e-2b9a-4d6e-9f00-1a2b3c4d5e6f", []byte(`{"x":1}`), "routing_key", "customer.1.created", "content_type", "text/plain")
	f.Add("u", []byte{0xff, 0x00}, "k", "", "correlation_id", "c")
	f.Add("u", []byte(nil), "ünïcödé", "välue\n", "x", "y")
	f.Add("u", []byte("{}"), durablews.PublishTokenHeader, "12", "x", "y")
	f.Fuzz(func(t *testing.T, uuid string, payload []byte, k1, v1, k2, v2 string) {
		msg := message.NewMessage(uuid, payload)
		msg.Metadata.Set(k1, v1)
		msg.Metadata.Set(k2, v2)
		m := durablews.DefaultMarshaler{}
		pub, err := m.Marshal(msg)
		if err != nil {
			// Only inputs AMQP cannot carry may be refused.
			reserved := k1 == "_watermill_message_uuid" || k2 == "_watermill_message_uuid"
			bad := uuid == "" || len(uuid) > 255 || k1 == "" || k2 == "" || len(k1) > 255 || len(k2) > 255 || reserved
			require.True(t, bad, "valid message refused: %v", err)
			return
		}
		require.Equal(t, uint8(amqp.Persistent), pub.DeliveryMode)
		require.NotContains(t, pub.Headers, durablews.PublishTokenHeader, "only the Publisher sets the token")
		delete(msg.Metadata, durablews.PublishTokenHeader)
		got, err := m.Unmarshal(deliveryOf(pub))
		require.NoError(t, err)
		require.Equal(t, msg.UUID, got.UUID)
		require.Equal(t, []byte(msg.Payload), []byte(got.Payload))
		require.Equal(t, msg.Metadata, got.Metadata)

		// watermill-amqp's DefaultMarshaler reads the same message.
		wm, err := wamqp.DefaultMarshaler{}.Unmarshal(deliveryOf(pub))
		require.NoError(t, err)
		require.Equal(t, msg.UUID, wm.UUID)
		require.Equal(t, msg.Metadata, wm.Metadata)
	})
}
