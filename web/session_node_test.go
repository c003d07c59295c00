package web_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/oauthbroker"
	"github.com/durablews/durablews/internal/testbroker"
	"github.com/durablews/durablews/tabsession"
)

// sessionNode is a private node configured for tab sessions (by
// scripts/rabbitmq-tab-sessions.sh), its signing key, and an admin
// connection whose channel, in confirm mode, declared a topic exchange.
type sessionNode struct {
	node *testbroker.Node
	key  []byte
	conn *amqp.Connection
	mu   sync.Mutex // ch
	ch   *amqp.Channel
}

func startSessionNode(t *testing.T, exchange string) *sessionNode {
	t.Helper()
	node, files, _ := oauthbroker.Start(t, testbroker.Options{})
	key, err := tabsession.LoadSigningKey(files.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := amqp.Dial(node.AMQPURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	return &sessionNode{node: node, key: key, conn: conn, ch: ch}
}

// publish sends a persistent JSON message with id to exchange and waits
// for the broker's confirm. Safe for concurrent use.
func (s *sessionNode) publish(exchange, key, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dc, err := s.ch.PublishWithDeferredConfirmWithContext(context.Background(), exchange, key, false, false, amqp.Publishing{
		MessageId: id, DeliveryMode: amqp.Persistent, ContentType: "application/json", Body: []byte(`{}`),
	})
	if err != nil {
		return fmt.Errorf("publish %s: %w", id, err)
	}
	if !dc.Wait() {
		return fmt.Errorf("publish %s: nacked", id)
	}
	return nil
}
