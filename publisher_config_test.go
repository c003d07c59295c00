package durablews_test

import (
	"net"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
)

// marshalerFunc adapts a function to watermill-amqp's Marshaler.
type marshalerFunc func(*message.Message) (amqp.Publishing, error)

func (f marshalerFunc) Marshal(m *message.Message) (amqp.Publishing, error) { return f(m) }
func (marshalerFunc) Unmarshal(d amqp.Delivery) (*message.Message, error) {
	return durablews.DefaultMarshaler{}.Unmarshal(d)
}

// What the broker (or amqp091-go) would refuse, or what would break the
// guarantee, is refused before anything is sent: ErrInvalidMessage at once,
// not channel retries ending in ErrConnectionLost, and never a transient
// message confirmed as if stored.
func TestPublish_RefusesWhatAMarshalerGotWrong(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "marshal")
	b.exchange(ex, "topic")
	q := b.queue(ex, "#", nil)
	for _, tc := range []struct {
		name   string
		change func(*amqp.Publishing)
		want   string
	}{
		{"uint header", func(p *amqp.Publishing) { p.Headers["attempt"] = uint(3) }, "value uint not supported"},
		{"nested uint header", func(p *amqp.Publishing) { p.Headers["meta"] = amqp.Table{"n": uint(3)} }, "value uint not supported"},
		{"transient", func(p *amqp.Publishing) { p.DeliveryMode = amqp.Transient }, "not amqp.Persistent"},
		{"delivery mode unset", func(p *amqp.Publishing) { p.DeliveryMode = 0 }, "not amqp.Persistent"},
		{"content type over 255 bytes", func(p *amqp.Publishing) { p.ContentType = string(make([]byte, 256)) }, "ContentType is 256 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex})
			cfg.Marshaler = marshalerFunc(func(m *message.Message) (amqp.Publishing, error) {
				pub, err := durablews.DefaultMarshaler{}.Marshal(m)
				tc.change(&pub)
				return pub, err
			})
			p := newPublisher(t, cfg)
			bad := newMsg("k")
			err := p.Publish(ex, bad, newMsg("k"))
			var pe *durablews.PublishError
			require.ErrorAs(t, err, &pe)
			require.Len(t, pe.Failed, 2)
			assert.ErrorIs(t, pe.Failed[0].Err, durablews.ErrInvalidMessage)
			assert.Contains(t, pe.Failed[0].Err.Error(), tc.want)
			assert.NotErrorIs(t, err, durablews.ErrConnectionLost)
			assert.Empty(t, pe.Confirmed)
			assert.Equal(t, 0, b.count(q), "nothing was sent")
		})
	}
}

// NewPublisher keeps its own copy of the Config's maps and slices: the
// caller may reuse or change its Config afterwards.
func TestNewPublisher_CopiesTheConfig(t *testing.T) {
	b := newBroker(t)
	ex := uniqueName(t, "copy")
	b.exchange(ex, "topic")
	q := b.queue(ex, "#", nil)
	cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: ex})
	p := newPublisher(t, cfg)

	delete(cfg.Exchanges, ex)
	cfg.Exchanges["later"] = durablews.Exchange{Name: "later"}
	cfg.URLs[0] = "amqp://guest:guest@127.0.0.1:1/"
	require.NoError(t, p.Publish(ex, newMsg("k")))
	assert.Equal(t, 1, b.count(q))
	err := p.Publish("later", newMsg("k"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown topic "later"`)
}

// silentListener accepts TCP connections and never answers, like a host
// that is up but whose broker hangs; it returns its address.
func silentListener(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done })
	return ln.Addr().String()
}

// A URL that does not answer costs a few seconds, not amqp091-go's 30 s,
// before the next URL is tried.
func TestNewPublisher_DialTimeout(t *testing.T) {
	silent := "amqp://guest:guest@" + silentListener(t) + "/"
	ex := uniqueName(t, "dial")
	b := newBroker(t)
	b.exchange(ex, "topic")

	cfg := durablews.NewConfig(silent, durablews.Exchange{Name: ex})
	cfg.URLs = append(cfg.URLs, amqpURL())
	start := time.Now()
	p := newPublisher(t, cfg)
	took := time.Since(start)
	t.Logf("NewPublisher took %v past a silent URL", took.Round(time.Millisecond))
	assert.Less(t, took, durablews.DefaultDialTimeout+3*time.Second)
	require.NoError(t, p.Publish(ex, newMsg("k")))

	cfg = durablews.NewConfig(silent, durablews.Exchange{Name: ex})
	cfg.DialTimeout = 300 * time.Millisecond
	start = time.Now()
	_, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	took = time.Since(start)
	require.Error(t, err)
	assert.Less(t, took, 3*time.Second, "Config.DialTimeout overrides the default")
	assert.Contains(t, err.Error(), "cannot connect to any broker")
}
