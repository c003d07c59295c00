package durablews_test

import (
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
)

// Publish with no messages is a no-op returning nil, as with every
// Watermill publisher, even for a topic it does not know; after Close it
// still reports the closed publisher.
func TestPublish_NoMessagesReturnsNil(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "empty")
	b.exchange(ex, "topic")
	p := newPublisher(t, durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex}))

	require.NoError(t, p.Publish(ex))
	require.NoError(t, p.Publish(ex, []*message.Message{}...))
	require.NoError(t, p.Publish("not-configured"))
	assert.Equal(t, 0, p.InFlight())

	require.NoError(t, p.Close())
	assert.ErrorIs(t, p.Publish(ex), durablews.ErrPublisherClosed)
}

// Fanout and headers exchanges do not route by key, but a key given in
// metadata reaches the consumer (delivery routing key; for STOMP clients
// the destination header).
func TestPublish_RoutingKeyKeptForFanoutAndHeaders(t *testing.T) {
	b := newBroker(t)
	fan := uniqueName(t, "keyfan")
	hdr := uniqueName(t, "keyhdr")
	b.exchange(fan, durablews.KindFanout)
	b.exchange(hdr, durablews.KindHeaders)
	fanQ := b.queue(fan, "", nil)
	hdrQ := uniqueName(t, "q")
	_, err := b.Ch.QueueDeclare(hdrQ, true, false, false, false, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		if ch, err := b.Conn.Channel(); err == nil {
			_, _ = ch.QueueDelete(hdrQ, false, false, false)
			_ = ch.Close()
		}
	})
	require.NoError(t, b.Ch.QueueBind(hdrQ, "", hdr, false, amqp.Table{"x-match": "all", "kind": "order"}))

	cfg := durablews.NewConfig(amqpURL(),
		durablews.Exchange{Name: fan, Kind: durablews.KindFanout},
		durablews.Exchange{Name: hdr, Kind: durablews.KindHeaders})
	p := newPublisher(t, cfg)

	for _, topic := range []string{fan, hdr} {
		withKey := newMsg("customer.42.order_paid")
		withKey.Metadata.Set("kind", "order")
		noKey := newMsg("") // still fine: these kinds need no key
		noKey.Metadata.Set("kind", "order")
		require.NoError(t, p.Publish(topic, withKey, noKey), topic)
	}
	for q, name := range map[string]string{fanQ: "fanout", hdrQ: "headers"} {
		got := b.drain(q)
		require.Len(t, got, 2, name)
		assert.Equal(t, "customer.42.order_paid", got[0].RoutingKey, "%s: the key given is kept", name)
		assert.Equal(t, "", got[1].RoutingKey, name)
	}

	tooLong := newMsg(strings.Repeat("k", 256))
	err = p.Publish(fan, tooLong)
	assert.ErrorIs(t, err, durablews.ErrInvalidMessage, "a key AMQP cannot carry is refused for fanout too")
	assert.ErrorContains(t, err, "over the AMQP limit")
}

// Topics not in Config.Exchanges are resolved by Config.ExchangeFor; a
// topic neither knows is an error that names the known topics.
func TestPublish_ExchangeForMapsGeneratedTopics(t *testing.T) {
	b := newBroker(t)
	prefix := uniqueName(t, "cqrs")
	static := uniqueName(t, "static")
	b.exchange(static, "topic")
	cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: static})
	var asked []string
	cfg.ExchangeFor = func(topic string) (durablews.Exchange, bool) {
		asked = append(asked, topic) // Publish calls it from this goroutine only here
		switch {
		case topic == "bad":
			return durablews.Exchange{Kind: durablews.KindFanout}, true // no Name
		case topic == "boom":
			panic("generated mapping bug")
		case strings.HasPrefix(topic, "events."):
			return durablews.Exchange{Name: prefix + "." + topic, Kind: durablews.KindFanout}, true
		}
		return durablews.Exchange{}, false
	}
	p := newPublisher(t, cfg)

	topic := "events.OrderPlaced"
	exName := prefix + "." + topic
	t.Cleanup(func() { b.deleteExchange(exName) })
	// The first publish declares the exchange; bind a queue, then publish again.
	require.NoError(t, p.Publish(topic, newMsg("")))
	q := b.queue(exName, "", nil)
	want := newMsg("")
	require.NoError(t, p.Publish(topic, want))
	got := b.drain(q)
	require.Len(t, got, 1)
	assert.Equal(t, want.UUID, got[0].MessageId)

	require.NoError(t, p.Publish(static, newMsg("k")), "Config.Exchanges still comes first")
	assert.NotContains(t, asked, static)

	err := p.Publish("billing.Invoice", newMsg("k"))
	require.Error(t, err)
	assert.ErrorContains(t, err, `unknown topic "billing.Invoice"`)
	assert.ErrorContains(t, err, "["+static+"]", "names the known topics")
	assert.ErrorContains(t, err, "Config.ExchangeFor does not map it")

	err = p.Publish("bad", newMsg(""))
	assert.ErrorContains(t, err, `ExchangeFor["bad"].Name is empty`)
	err = p.Publish("boom", newMsg(""))
	assert.ErrorContains(t, err, "Config.ExchangeFor panicked: generated mapping bug")
}

func TestConfig_ExchangeForStandsInForExchanges(t *testing.T) {
	cfg := durablews.NewConfig(amqpURL())
	err := cfg.Validate()
	require.Error(t, err)
	assert.ErrorContains(t, err, "Exchanges is empty and ExchangeFor is nil")

	cfg.ExchangeFor = func(topic string) (durablews.Exchange, bool) {
		return durablews.Exchange{Name: topic}, true
	}
	assert.NoError(t, cfg.Validate())

	// Without ExchangeFor the unknown-topic error says where to add it.
	p := newPublisher(t, durablews.NewConfig(amqpURL(), durablews.Exchange{Name: uniqueName(t, "known")}))
	err = p.Publish("nope", newMsg("k"))
	assert.ErrorContains(t, err, "add it to Config.Exchanges, or map generated topics with Config.ExchangeFor")
}
