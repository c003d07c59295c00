package durablews_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/stomptab"
	"github.com/durablews/durablews/internal/testbroker"
)

// rawPublisher publishes one message at a time on a confirm channel of a
// plain amqp091 connection and reports exactly what the broker answered, so
// the cluster tests state RabbitMQ's behaviour independently of the
// publisher under test.
type rawPublisher struct {
	conn    *amqp.Connection
	ch      *amqp.Channel
	returns chan amqp.Return
}

func newRawPublisher(t *testing.T, node *testbroker.Node) *rawPublisher {
	t.Helper()
	conn := dialNode(t, node)
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	// Buffered: the connection's reader blocks on an unread return. A
	// basic.return precedes its basic.ack on the wire, so it is in the
	// channel by the time the confirm is seen.
	returns := ch.NotifyReturn(make(chan amqp.Return, 4096))
	return &rawPublisher{conn: conn, ch: ch, returns: returns}
}

// Outcomes of one raw publish.
const (
	outAck       = "ack"
	outNack      = "nack"
	outReturnAck = "return+ack"
	outReturnNak = "return+nack"
)

// publish sends one persistent message and waits for its confirm (10 s).
// It returns the outcome, or an error if the channel failed.
func (p *rawPublisher) publish(exchange, key, id string, mandatory bool) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, mandatory, false, amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		MessageId:    id,
		Body:         []byte(`{"id":"` + id + `"}`),
	})
	if err != nil {
		return "", err
	}
	acked, err := dc.WaitContext(ctx)
	if err != nil {
		return "", err
	}
	returned := false
	for {
		select {
		case r := <-p.returns:
			if r.MessageId == id {
				returned = true
			}
			continue
		default:
		}
		break
	}
	switch {
	case returned && acked:
		return outReturnAck, nil
	case returned:
		return outReturnNak, nil
	case acked:
		return outAck, nil
	default:
		return outNack, nil
	}
}

// tally counts outcomes for the logs, e.g. "ack=20 nack=3".
type tally map[string]int

func (c tally) String() string {
	var parts []string
	for _, k := range []string{outAck, outNack, outReturnAck, outReturnNak, "error"} {
		if c[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, c[k]))
		}
	}
	return strings.Join(parts, " ")
}

// dialNodeTab opens a Go STOMP tab on node's Web-STOMP listener.
func dialNodeTab(t *testing.T, node *testbroker.Node) *stomptab.Tab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	tab, err := stomptab.Dial(ctx, stomptab.Options{URL: node.WebSTOMPURL()})
	require.NoError(t, err)
	t.Cleanup(func() { tab.Drop() })
	return tab
}

// waitRunning waits (up to 2 minutes) until the given nodes see exactly
// each other as the cluster's running nodes.
func waitRunning(t *testing.T, c *testbroker.Cluster, nodes ...*testbroker.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, c.WaitRunning(ctx, nodes...))
}
