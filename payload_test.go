package durablews_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/stomptab"
)

// The largest payload Publish accepts by default (MaxPayloadBytes) really
// reaches a Web-STOMP tab; one byte more is refused before sending.
func TestWebSTOMP_LargestAcceptedPayloadIsDelivered(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, nil)
	spec := stomptab.Sub{Exchange: e.ex, BindingKey: "customer.9.#", QueueName: e.queueName("big"), Prefetch: 1}
	tab := brokertest.DialTab(t, stomptab.Options{})
	sub := brokertest.Subscribe(t, tab, spec)

	payload := bytes.Repeat([]byte("x"), durablews.DefaultMaxPayloadBytes)
	big := message.NewMessage(watermill.NewUUID(), payload)
	big.Metadata.Set(durablews.RoutingKeyMetadataKey, "customer.9.big")
	e.publish(big)

	tooBig := message.NewMessage(watermill.NewUUID(), append(payload, 'x'))
	tooBig.Metadata.Set(durablews.RoutingKeyMetadataKey, "customer.9.big")
	require.ErrorIs(t, e.pub.Publish(e.ex, tooBig), durablews.ErrInvalidMessage)

	m, err := sub.Next(brokertest.Ctx(t, 60*time.Second))
	require.NoError(t, err)
	assert.Equal(t, big.UUID, m.ID)
	assert.Equal(t, len(payload), len(m.Body))
	require.NoError(t, sub.Ack(m))
}
