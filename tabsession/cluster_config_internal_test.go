package tabsession

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
)

func TestClusterConfig(t *testing.T) {
	base := Config{
		AMQPURLs:     []string{"amqp://a:b@n1:5672/", "amqp://a:b@n2:5672/"},
		WebSTOMPURLs: []string{"ws://n1:15674/ws", "ws://n2:15674/ws"},
		Authenticate: func(*http.Request) (string, error) { return "u", nil },
		Bindings:     func(context.Context, string) ([]Binding, error) { return nil, nil },
		SigningKey:   bytes.Repeat([]byte{1}, MinSigningKeyBytes),
	}
	good := base
	good.setDefaults()
	if err := good.Validate(); err != nil {
		t.Fatalf("lists of nodes: %v", err)
	}
	if good.QueueType != QueueClassic {
		t.Errorf("default QueueType %q, want %q", good.QueueType, QueueClassic)
	}
	if _, ok := queueArgs(good, "4.0.5")["x-queue-type"]; ok {
		t.Error("classic tab queues are declared without x-queue-type")
	}
	good.QueueType = QueueQuorum
	if got := queueArgs(good, "4.0.5")["x-queue-type"]; got != QueueQuorum {
		t.Errorf("quorum config declares x-queue-type %v", got)
	}
	if got := queueArgs(good, "4.0.5")["x-delivery-limit"]; got != int64(-1) {
		t.Errorf("quorum tab queue on RabbitMQ 4.0.5: x-delivery-limit %v, want -1 (4.x drops a message after 20 deliveries)", got)
	}
	if got, ok := queueArgs(good, "3.10.8")["x-delivery-limit"]; ok {
		t.Errorf("quorum tab queue on RabbitMQ 3.10.8: x-delivery-limit %v, want none (3.10 reads -1 as a limit)", got)
	}

	bad := base
	bad.AMQPURL = "amqp://a:b@n1:5672/"
	bad.WebSTOMPURL = "ws://lb/ws"
	bad.ManagementURL = "http://a:b@n1:15672"
	bad.ManagementURLs = []string{"http://a:b@n2:15672"}
	bad.QueueType = "stream"
	bad.setDefaults()
	err := bad.Validate()
	for _, want := range []string{"AMQPURL and AMQPURLs are both set", "WebSTOMPURL and WebSTOMPURLs are both set",
		"ManagementURL and ManagementURLs are both set", `QueueType "stream"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to contain %q", err, want)
		}
	}
}
