package faultproxy

import (
	"context"
	"errors"
	"net"
	"net/url"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokerversion"
)

// sharedBroker is the machine's shared RabbitMQ. These tests only open
// connections to it (never reconfigure it) and skip when it is unreachable.
func sharedBroker(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(brokerversion.SharedAMQPURL())
	if err != nil {
		t.Fatalf("shared broker URL: %v", err)
	}
	addr := u.Host
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("no broker at %s: %v (run `make broker`)", addr, err)
	}
	_ = c.Close()
	return addr
}

func amqpDial(t *testing.T, addr string, heartbeat time.Duration) (*amqp.Connection, chan *amqp.Error) {
	t.Helper()
	c, err := amqp.DialConfig("amqp://guest:guest@"+addr+"/", amqp.Config{Heartbeat: heartbeat})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c, c.NotifyClose(make(chan *amqp.Error, 1))
}

func publishConfirmed(t *testing.T, c *amqp.Connection) {
	t.Helper()
	ch, err := c.Channel()
	require.NoError(t, err)
	defer ch.Close()
	require.NoError(t, ch.Confirm(false))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "faultproxy-no-such-queue", false, false, amqp.Publishing{Body: []byte("x")})
	require.NoError(t, err)
	ok, err := dc.WaitContext(ctx)
	require.NoError(t, err)
	require.True(t, ok)
}

func TestAMQPCutAll(t *testing.T) {
	t.Parallel()
	p := newProxy(t, sharedBroker(t))
	c, closed := amqpDial(t, p.Addr(), 10*time.Second)
	publishConfirmed(t, c)
	require.Equal(t, 1, p.CutAll())
	select {
	case err := <-closed:
		require.NotNil(t, err)
		t.Logf("amqp091 after CutAll: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("amqp091 did not notice the cut")
	}
}

// TestAMQPStallHeartbeat: a stalled (half-open) connection is only detected
// by heartbeats; amqp091-go gives up after about 3 missed intervals.
func TestAMQPStallHeartbeat(t *testing.T) {
	t.Parallel()
	p := newProxy(t, sharedBroker(t))
	c, closed := amqpDial(t, p.Addr(), time.Second)
	publishConfirmed(t, c)
	p.Stall(true)
	start := time.Now()
	select {
	case err := <-closed:
		require.NotNil(t, err)
		t.Logf("amqp091 detected the stall after %v: %v", time.Since(start).Round(100*time.Millisecond), err)
	case <-time.After(15 * time.Second):
		t.Fatal("amqp091 did not detect a stalled connection")
	}
	p.Stall(false)
}

func TestAMQPRefuse(t *testing.T) {
	t.Parallel()
	p := newProxy(t, sharedBroker(t))
	p.SetRefuse(true)
	_, err := amqp.DialConfig("amqp://guest:guest@"+p.Addr()+"/", amqp.Config{
		Dial: amqp.DefaultDial(2 * time.Second),
	})
	require.Error(t, err)
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "refuse should fail fast, got %v", err)
	t.Logf("amqp091 dial while refusing: %v", err)
	p.SetRefuse(false)
	c, _ := amqpDial(t, p.Addr(), 10*time.Second)
	publishConfirmed(t, c)
}
