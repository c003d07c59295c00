package durablews_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
)

// stallingBroker is a fake broker that stops reading a connection as soon
// as a basic.publish arrives (a frozen node, or a broker that blocks the
// connection without telling), until the test ends. stalled receives once
// per stall.
func stallingBroker(t *testing.T) (b *fakeBroker, stalled <-chan struct{}) {
	b = newFakeBroker(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the broker's own cleanup
	ch := make(chan struct{}, 16)
	b.onPublishMethod = func(*fakeConn) {
		ch <- struct{}{}
		<-release
	}
	return b, ch
}

// bigMessage is a message far larger than the socket buffers of a
// loopback connection, so writing it stalls when the peer stops reading.
func bigMessage() *message.Message {
	m := message.NewMessage(watermill.NewUUID(), bytes.Repeat([]byte("a"), 32<<20))
	m.Metadata.Set(durablews.RoutingKeyMetadataKey, "k")
	return m
}

// A Publish whose write stalls because the broker stopped reading ends
// with ConfirmTimeout and says so, and Close returns within its
// documented bound (ConfirmTimeout + 5 s) even while that write is stuck.
func TestPublish_StalledWriteEndsAtConfirmTimeout(t *testing.T) {
	const confirmTimeout = 2 * time.Second
	for _, closeWhileStuck := range []bool{false, true} {
		name := map[bool]string{false: "publish alone", true: "close while stuck"}[closeWhileStuck]
		t.Run(name, func(t *testing.T) {
			b, stalled := stallingBroker(t)
			cfg := durablews.NewConfig(b.URL(), durablews.Exchange{Name: "events"})
			cfg.ConfirmTimeout = confirmTimeout
			cfg.MaxPayloadBytes = 64 << 20
			p, err := durablews.NewPublisher(cfg, nil)
			require.NoError(t, err)

			msg := bigMessage()
			errc := make(chan error, 1)
			go func() { errc <- p.Publish("events", msg) }()
			// ConfirmTimeout runs from when the batch is validated and
			// marshalled (checking 32 MiB of UTF-8 takes a while under
			// -race), so measure from the write, which starts right after.
			var start time.Time
			select {
			case <-stalled:
				start = time.Now()
			case <-time.After(20 * time.Second):
				t.Fatal("the publish never reached the fake broker")
			}
			closed := make(chan time.Duration, 1)
			if closeWhileStuck {
				time.Sleep(100 * time.Millisecond) // let the write fill the socket buffers
				go func() {
					closeStart := time.Now()
					_ = p.Close()
					closed <- time.Since(closeStart)
				}()
			}

			var pubErr error
			select {
			case pubErr = <-errc:
			case <-time.After(confirmTimeout + 5*time.Second):
				t.Fatalf("Publish still stuck %v after its write began (ConfirmTimeout %v)", time.Since(start), confirmTimeout)
			}
			took := time.Since(start)
			t.Logf("after %v: %v", took.Round(time.Millisecond), pubErr)
			assert.Less(t, took, confirmTimeout+time.Second, "Publish ends at its ConfirmTimeout (measured from its write)")
			assert.ErrorIs(t, pubErr, durablews.ErrConfirmTimeout)
			assert.ErrorIs(t, pubErr, durablews.ErrNotSent, "an unfinished write never gives the broker the whole message")
			assert.ErrorContains(t, pubErr, "stopped reading")
			var pe *durablews.PublishError
			require.ErrorAs(t, pubErr, &pe)
			assert.Len(t, pe.Failed, 1)

			if closeWhileStuck {
				select {
				case d := <-closed:
					assert.Less(t, d, confirmTimeout+5*time.Second, "Close returns within ConfirmTimeout + 5 s")
				case <-time.After(confirmTimeout + 10*time.Second):
					t.Fatal("Close did not return within ConfirmTimeout + 10 s")
				}
				return
			}
			closeStart := time.Now()
			require.NoError(t, p.Close())
			assert.Less(t, time.Since(closeStart), 6*time.Second, "Close after the stall")
		})
	}
}

// While the broker blocks the connection (resource alarm) it reads
// nothing; Close then ends the calls in progress at once, documented as
// such, also one stuck writing a message the broker stopped reading.
func TestPublish_CloseEndsAWriteStuckOnABlockedConnection(t *testing.T) {
	b, stalled := stallingBroker(t)
	stall := b.onPublishMethod
	b.onPublishMethod = func(c *fakeConn) {
		_ = c.method(0, fkConnection, 60, fkShortStr("low on memory")) // connection.blocked
		stall(c)
	}
	cfg := durablews.NewConfig(b.URL(), durablews.Exchange{Name: "events"})
	cfg.ConfirmTimeout = 20 * time.Second
	cfg.MaxPayloadBytes = 64 << 20
	p, err := durablews.NewPublisher(cfg, nil)
	require.NoError(t, err)

	msg := bigMessage()
	errc := make(chan error, 1)
	go func() { errc <- p.Publish("events", msg) }()
	select {
	case <-stalled:
	case <-time.After(20 * time.Second):
		t.Fatal("the publish never reached the fake broker")
	}
	time.Sleep(200 * time.Millisecond) // the write fills the socket buffers; the block notice arrives
	start := time.Now()
	closed := make(chan struct{})
	go func() { _ = p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatalf("Close still waiting after 5 s (ConfirmTimeout %v)", cfg.ConfirmTimeout)
	}
	assert.Less(t, time.Since(start), 2*time.Second, "Close ends at once while the broker blocks the connection")
	pubErr := <-errc
	t.Logf("%v", pubErr)
	assert.ErrorIs(t, pubErr, durablews.ErrPublisherClosed)
	assert.ErrorIs(t, pubErr, durablews.ErrNotSent)
}

// A channel error the broker sends about what was published (403: the user
// may not write to the exchange; 406) is reported at once, naming the code
// and the broker's reason, instead of being republished until it turns
// into ErrConnectionLost ("channel closed 4 times").
func TestPublish_ChannelErrorIsReportedAtOnce(t *testing.T) {
	for _, c := range []struct {
		code uint16
		text string
		hint string
	}{
		{403, "ACCESS_REFUSED - access to exchange 'events' in vhost '/' refused for user 'guest'", "write permission"},
		{406, "PRECONDITION_FAILED - message size 70000 is larger than configured max size 65536", "PRECONDITION_FAILED"},
	} {
		t.Run(fmt.Sprint(c.code), func(t *testing.T) {
			b := newFakeBroker(t)
			var publishes atomic.Int32
			b.onPublish = func(fc *fakeConn, p fakePublish) {
				publishes.Add(1)
				if p.Tag == 1 {
					_ = fc.CloseChannel(p.Channel, c.code, c.text)
				}
			}
			cfg := durablews.NewConfig(b.URL(), durablews.Exchange{Name: "events"})
			cfg.ConfirmTimeout = 10 * time.Second
			p, err := durablews.NewPublisher(cfg, nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = p.Close() })

			batch := []*message.Message{newMsg("k.1"), newMsg("k.2"), newMsg("k.3")}
			start := time.Now()
			err = p.Publish("events", batch...)
			t.Logf("after %v: %v", time.Since(start).Round(time.Millisecond), err)
			assert.Less(t, time.Since(start), 2*time.Second, "reported at once")
			var pe *durablews.PublishError
			require.ErrorAs(t, err, &pe)
			assert.Len(t, pe.Failed, 3)
			for _, f := range pe.Failed {
				assert.ErrorIs(t, f.Err, durablews.ErrRefused)
				assert.NotErrorIs(t, f.Err, durablews.ErrConnectionLost)
				var ae *amqp.Error
				require.ErrorAs(t, f.Err, &ae, "the broker's error is there to inspect")
				assert.Equal(t, int(c.code), ae.Code)
				assert.Equal(t, c.text, ae.Reason)
				assert.ErrorContains(t, f.Err, c.hint)
			}
			assert.LessOrEqual(t, int(publishes.Load()), len(batch), "nothing was republished")
		})
	}
}

// A header amqp091-go cannot encode, deep inside a value, is refused before
// anything is sent: the connection, and other callers' messages on it, are
// not lost to a failed write.
func TestPublish_RefusesAnUnencodableNestedHeader(t *testing.T) {
	b := newFakeBroker(t)
	var publishes atomic.Int32
	b.onPublish = func(fc *fakeConn, p fakePublish) {
		publishes.Add(1)
		_ = fc.Ack(p.Channel, p.Tag)
	}
	cfg := durablews.NewConfig(b.URL(), durablews.Exchange{Name: "events"})
	cfg.Marshaler = marshalerFunc(func(m *message.Message) (amqp.Publishing, error) {
		pub, err := durablews.DefaultMarshaler{}.Marshal(m)
		if m.Metadata.Get("bad") != "" {
			pub.Headers["trace"] = []any{amqp.Table{strings.Repeat("k", 256): "v"}}
		}
		return pub, err
	})
	p, err := durablews.NewPublisher(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })

	bad := newMsg("k")
	bad.Metadata.Set("bad", "yes")
	err = p.Publish("events", newMsg("k"), bad)
	var pe *durablews.PublishError
	require.ErrorAs(t, err, &pe)
	require.Len(t, pe.Failed, 2)
	assert.ErrorIs(t, pe.Failed[1].Err, durablews.ErrInvalidMessage)
	assert.ErrorContains(t, pe.Failed[1].Err, `header "trace": element 0: key "kkkk`)
	assert.ErrorIs(t, pe.Failed[0].Err, durablews.ErrNotSent, "the valid one of the batch is not sent either")
	assert.Zero(t, publishes.Load(), "nothing was sent")
	require.NoError(t, p.Publish("events", newMsg("k")), "the connection is intact")
	assert.True(t, p.Connected())
}
