package durablews_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
)

// gatedDialer is a cuttableDialer that can refuse new connections, so a
// test can hold the publisher in "reconnecting" without touching the
// shared broker.
type gatedDialer struct {
	cuttableDialer
	refuse atomic.Bool
}

func (d *gatedDialer) Dial(network, addr string) (net.Conn, error) {
	if d.refuse.Load() {
		return nil, errors.New("gatedDialer: refused by the test")
	}
	return d.cuttableDialer.Dial(network, addr)
}

// Connected and Ping follow the connection: up, lost and reconnecting,
// back, closed.
func TestPublisher_ConnectedAndPingFollowTheConnection(t *testing.T) {
	dialer := &gatedDialer{}
	cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: uniqueName(t, "ready")})
	cfg.AMQP.Dial = dialer.Dial
	cfg.Reconnect = durablews.Backoff{Initial: 20 * time.Millisecond, Max: 100 * time.Millisecond, Multiplier: 2}
	p := newPublisher(t, cfg)

	assert.True(t, p.Connected())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	require.NoError(t, p.Ping(ctx))

	dialer.refuse.Store(true)
	dialer.cutAll()
	require.Eventually(t, func() bool { return !p.Connected() }, 10*time.Second, 5*time.Millisecond,
		"Connected must turn false once the connection is cut")
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	err := p.Ping(short)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "not connected to the broker: reconnecting")
	assert.ErrorContains(t, err, brokerHost(t), "names the broker")

	// Ping waits for the reconnect within its context.
	dialer.refuse.Store(false)
	long, cancelLong := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelLong()
	require.NoError(t, p.Ping(long))
	assert.True(t, p.Connected())
	assert.Greater(t, dialer.dialCount(), 1)

	require.NoError(t, p.Close())
	assert.False(t, p.Connected())
	assert.ErrorIs(t, p.Ping(context.Background()), durablews.ErrPublisherClosed)
}

// Close ends a Ping that waits for a reconnect.
func TestPublisher_PingReturnsOnClose(t *testing.T) {
	dialer := &gatedDialer{}
	cfg := durablews.NewConfig(amqpURL(), durablews.Exchange{Name: uniqueName(t, "ready")})
	cfg.AMQP.Dial = dialer.Dial
	p := newPublisher(t, cfg)
	dialer.refuse.Store(true)
	dialer.cutAll()

	require.Eventually(t, func() bool { return !p.Connected() }, 10*time.Second, 5*time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- p.Ping(context.Background()) }()
	select {
	case err := <-done:
		t.Fatalf("Ping returned %v while the publisher cannot reconnect", err)
	case <-time.After(50 * time.Millisecond): // Ping is waiting (or about to)
	}
	require.NoError(t, p.Close())
	select {
	case err := <-done:
		assert.ErrorIs(t, err, durablews.ErrPublisherClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("Ping kept waiting after Close")
	}
}

// A Kubernetes readiness endpoint: 200 while the publisher is connected,
// 503 with the reason while it reconnects. Point the pod's readinessProbe
// (httpGet /readyz, timeoutSeconds above the 1 s used here) at it; not
// the livenessProbe.
func ExamplePublisher_Ping() {
	cfg := durablews.NewConfig("amqp://guest:guest@127.0.0.1:5672/",
		durablews.Exchange{Name: "durablews-example-events"})
	pub, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if err := pub.Ping(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output: 200 ok
}
