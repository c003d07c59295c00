package receipts_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/receipts"
)

func TestFromMessage(t *testing.T) {
	_, err := receipts.FromMessage(nil)
	assert.ErrorIs(t, err, receipts.ErrNotReceipt)
	_, err = receipts.FromMessage(message.NewMessage("x", []byte("hello")))
	assert.ErrorIs(t, err, receipts.ErrNotReceipt)
	_, err = receipts.FromMessage(message.NewMessage("x", []byte(`{"subscription":"s"}`)))
	assert.ErrorIs(t, err, receipts.ErrNotReceipt)
	assert.ErrorContains(t, err, "no message_id or tab_id")

	r, err := receipts.FromMessage(message.NewMessage("m/t", []byte(`{"message_id":"m","user_key":"u","tab_id":"t","subscription":"s","stream":"p","offset":3,"handled_at":"2025-06-01T12:00:00.001Z","received_at":"2025-06-01T12:00:01Z"}`)))
	require.NoError(t, err)
	assert.Equal(t, "m/t", r.MessageUUID())
	assert.Equal(t, int64(3), r.Offset)
	assert.Equal(t, 1, r.HandledAt.Nanosecond()/1e6)
}

func TestSubscriberConfig_Validate(t *testing.T) {
	_, err := receipts.NewSubscriber(receipts.Config{URL: "http://x", Queue: "", Exchange: "amq.topic", PrefetchCount: -1}, nil)
	require.Error(t, err)
	for _, want := range []string{`URL "http://x": scheme must be amqp`, "Queue is empty", "reserved amq. prefix", "PrefetchCount -1"} {
		assert.ErrorContains(t, err, want)
	}
	_, err = receipts.NewSubscriber(receipts.Config{}, nil)
	assert.ErrorContains(t, err, "URL is empty")
	assert.NoError(t, receipts.Config{URL: "amqp://h/", Queue: "q"}.Validate())
}
