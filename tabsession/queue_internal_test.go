package tabsession

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestQueueNameIsKeyed(t *testing.T) {
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	name := queueName(k1, "alice", "alicetab0000000001")
	if !regexp.MustCompile(`^tab-[0-9a-f]{16}-alicetab0000000001$`).MatchString(name) {
		t.Fatalf("queue name %q: want tab-<16 hex>-<tab id>", name)
	}
	if queueName(k1, "alice", "alicetab0000000001") != name {
		t.Fatal("the same key, user and tab id must give the same queue (renewal finds it)")
	}
	if queueName(k2, "alice", "alicetab0000000001") == name {
		t.Fatal("another key gave the same queue name: the user part is not keyed")
	}
	if queueName(k1, "bob", "alicetab0000000001") == name {
		t.Fatal("two users got the same queue for one tab id")
	}
	plain := sha256.Sum256([]byte("alice"))
	if strings.Contains(name, hex.EncodeToString(plain[:8])) {
		t.Fatal("the user part is a plain hash of the user id: anyone can compute it")
	}
}

func TestQueueNameKeyDefault(t *testing.T) {
	signing := bytes.Repeat([]byte{7}, 32)
	derived := queueNameKey(Config{SigningKey: signing})
	if bytes.Equal(derived, signing) || len(derived) != sha256.Size {
		t.Fatalf("derived key %x: want a 32-byte key other than the signing key", derived)
	}
	if !bytes.Equal(derived, queueNameKey(Config{SigningKey: signing})) {
		t.Fatal("the derived key must be stable, or every instance names queues differently")
	}
	own := bytes.Repeat([]byte{9}, 32)
	if !bytes.Equal(queueNameKey(Config{SigningKey: signing, QueueNameKey: own}), own) {
		t.Fatal("Config.QueueNameKey is not used")
	}
}

func TestRefusedByBroker(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&amqp.Error{Code: amqp.AccessRefused, Server: true, Reason: "ACCESS_REFUSED"}, true},
		{fmt.Errorf("bind: %w", &amqp.Error{Code: amqp.NotFound, Server: true}), true},
		{&amqp.Error{Code: amqp.PreconditionFailed, Server: true}, true},
		{&amqp.Error{Code: amqp.ConnectionForced, Server: true, Reason: "CONNECTION_FORCED - broker forced connection closure"}, false},
		{amqp.ErrClosed, false},
		{&amqp.Error{Code: amqp.FrameError, Reason: "write tcp 127.0.0.1:1->127.0.0.1:2: write: connection reset by peer"}, false},
		{&net.OpError{Op: "write", Err: syscall.ECONNRESET}, false},
		{io.ErrUnexpectedEOF, false},
	} {
		if got := refusedByBroker(tc.err); got != tc.want {
			t.Errorf("refusedByBroker(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
