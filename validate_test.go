package durablews

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testConfig() Config {
	c := NewConfig("amqp://guest:guest@127.0.0.1:5672/", Exchange{Name: "events"}, Exchange{Name: "all", Kind: KindFanout})
	c.MaxPayloadBytes = 1024
	return c
}

func TestRoutingKey(t *testing.T) {
	c := testConfig()
	topic := c.Exchanges["events"]
	msg := message.NewMessage("u", nil)

	_, err := c.routingKey("events", topic, msg)
	assert.ErrorContains(t, err, `no routing key for topic exchange "events": set metadata "routing_key"`)

	msg.Metadata.Set(RoutingKeyMetadataKey, strings.Repeat("k", 256))
	_, err = c.routingKey("events", topic, msg)
	assert.ErrorContains(t, err, "256 bytes, over the AMQP limit of 255")

	msg.Metadata.Set(RoutingKeyMetadataKey, "customer.\xff")
	_, err = c.routingKey("events", topic, msg)
	assert.ErrorContains(t, err, "not valid UTF-8")

	msg.Metadata.Set(RoutingKeyMetadataKey, "customer.1")
	key, err := c.routingKey("events", topic, msg)
	require.NoError(t, err)
	assert.Equal(t, "customer.1", key)

	key, err = c.routingKey("all", c.Exchanges["all"], message.NewMessage("u", nil))
	require.NoError(t, err, "fanout needs no key")
	assert.Empty(t, key)

	c.RoutingKey = func(string, *message.Message) (string, error) { panic("boom") }
	_, err = c.routingKey("events", topic, msg)
	assert.ErrorContains(t, err, "Config.RoutingKey panicked: boom")
}

func TestValidateForBrowser(t *testing.T) {
	c := testConfig()
	ok := message.NewMessage("u", []byte(`{"a":"ü"}`))
	require.NoError(t, c.validateForBrowser(ok))

	big := message.NewMessage("u", make([]byte, 1025))
	assert.ErrorContains(t, c.validateForBrowser(big), "1025 bytes, over Config.MaxPayloadBytes (1024)")

	bin := message.NewMessage("u", []byte{0xff, 0xfe})
	assert.ErrorContains(t, c.validateForBrowser(bin), "not valid UTF-8")
	c.BinaryFrames = true
	assert.NoError(t, c.validateForBrowser(bin), "binary frames carry any bytes")
	c.BinaryFrames = false

	for _, key := range []string{"content-type", "Message-Id", "destination", "amqp-message-id"} {
		m := message.NewMessage("u", nil)
		m.Metadata.Set(key, "x")
		assert.ErrorContains(t, c.validateForBrowser(m), "collides with a STOMP header", key)
	}
	m := message.NewMessage("u", nil)
	m.Metadata.Set("bad\nkey", "x")
	assert.ErrorContains(t, c.validateForBrowser(m), "line break")
	m = message.NewMessage("u", nil)
	m.Metadata.Set("k", "\xff")
	assert.ErrorContains(t, c.validateForBrowser(m), "not valid UTF-8")
}

// FuzzRoutingKeyAndValidation checks that whatever a message holds, the
// routing-key extraction and the browser checks never panic, and that what
// they accept is something AMQP and a Web-STOMP text frame can carry.
func FuzzRoutingKeyAndValidation(f *testing.F) {
	f.Add("customer.42.created", "tenant", "acme", []byte(`{}`))
	f.Add("", "content-type", "x", []byte{0xff})
	f.Add(strings.Repeat("a", 300), "k\x00", "v\n", []byte("ok"))
	f.Fuzz(func(t *testing.T, key, mk, mv string, payload []byte) {
		c := testConfig()
		msg := message.NewMessage("u", payload)
		msg.Metadata.Set(RoutingKeyMetadataKey, key)
		msg.Metadata.Set(mk, mv)
		got, err := c.routingKey("events", c.Exchanges["events"], msg)
		if err == nil {
			require.NotEmpty(t, got)
			require.LessOrEqual(t, len(got), 255)
			require.True(t, utf8.ValidString(got))
		}
		if err := c.validateForBrowser(msg); err == nil {
			require.True(t, utf8.Valid(payload))
			require.LessOrEqual(t, len(payload), c.MaxPayloadBytes)
			for k, v := range msg.Metadata {
				require.True(t, utf8.ValidString(k) && utf8.ValidString(v))
				require.False(t, strings.ContainsAny(k, "\r\n\x00"))
				require.False(t, stompReservedHeaders[strings.ToLower(k)])
			}
		}
		if _, err := (DefaultMarshaler{}).Marshal(msg); err == nil {
			for k := range msg.Metadata {
				require.True(t, k != "" && len(k) <= 255)
			}
		}
	})
}

// amqp091-go cannot encode a table key over 255 bytes at any depth: a
// write with one fails and drops the connection, and every caller's
// messages are republished. checkPublishing finds such a key inside
// arrays and inner tables too, and says where.
func TestCheckPublishing_NestedHeaderKeys(t *testing.T) {
	long := strings.Repeat("k", 256)
	for _, c := range []struct {
		name    string
		headers amqp.Table
		where   string
	}{
		{"top level", amqp.Table{long: "v"}, `header name "kkkk`},
		{"inner table", amqp.Table{"outer": amqp.Table{long: "v"}}, `header "outer": key "kkkk`},
		{"table in an array", amqp.Table{"outer": []any{"ok", amqp.Table{long: "v"}}}, `header "outer": element 1: key "kkkk`},
		{"deep", amqp.Table{"a": []any{[]any{amqp.Table{"b": amqp.Table{long: 1}}}}}, `header "a": element 0: element 0: in table key "b": key "kkkk`},
	} {
		pub := amqp.Publishing{DeliveryMode: amqp.Persistent, Headers: c.headers}
		err := checkPublishing(pub)
		require.Error(t, err, c.name)
		assert.ErrorContains(t, err, c.where, c.name)
		assert.ErrorContains(t, err, "256 bytes, over the AMQP limit of 255", c.name)
	}
	ok := amqp.Table{"outer": []any{amqp.Table{strings.Repeat("k", 255): "v"}}, "t": amqp.Table{"x": []any{int32(1)}}}
	assert.NoError(t, checkPublishing(amqp.Publishing{DeliveryMode: amqp.Persistent, Headers: ok}))
}
