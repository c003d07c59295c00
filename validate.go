package durablews

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/durablews/durablews/internal/amqpconn"
	amqp "github.com/rabbitmq/amqp091-go"
)

// stompReservedHeaders are header names RabbitMQ's STOMP adapter writes
// itself. A metadata key with one of these names would reach the browser as
// a duplicate header, and STOMP clients keep the first one, so a custom
// "content-type" silently replaces the real one.
var stompReservedHeaders = map[string]bool{
	"ack": true, "amqp-message-id": true, "app-id": true, "content-encoding": true,
	"content-length": true, "content-type": true, "correlation-id": true,
	"destination": true, "expiration": true, "message-id": true, "persistent": true,
	"priority": true, "receipt": true, "redelivered": true, "reply-to": true,
	"subscription": true, "timestamp": true, "type": true, "user-id": true,
}

// validateForBrowser rejects messages a Web-STOMP client could not
// receive: they would either be dropped by the broker or close the tab's
// socket and be redelivered forever.
func (c *Config) validateForBrowser(msg *message.Message) error {
	if len(msg.Payload) > c.MaxPayloadBytes {
		return fmt.Errorf("payload is %d bytes, over Config.MaxPayloadBytes (%d): send a reference to the data instead", len(msg.Payload), c.MaxPayloadBytes)
	}
	if !c.BinaryFrames && !utf8.Valid(msg.Payload) {
		return fmt.Errorf("payload is not valid UTF-8: Web-STOMP text frames cannot carry it (the browser would disconnect and get it redelivered forever); encode it (JSON, base64) or set Config.BinaryFrames when the broker uses web_stomp.ws_frame = binary")
	}
	for k, v := range msg.Metadata {
		if stompReservedHeaders[strings.ToLower(k)] {
			return fmt.Errorf("metadata key %q collides with a STOMP header RabbitMQ sets itself; rename it (content_type and correlation_id are mapped for you)", k)
		}
		if strings.ContainsAny(k, "\x00\r\n") || strings.ContainsAny(v, "\x00") {
			return fmt.Errorf("metadata key %.40q or its value contains NUL or a line break, which STOMP frames cannot carry", k)
		}
		if !c.BinaryFrames && (!utf8.ValidString(k) || !utf8.ValidString(v)) {
			return fmt.Errorf("metadata key %.40q or its value is not valid UTF-8, which Web-STOMP text frames cannot carry", k)
		}
	}
	return nil
}

// routingKey computes and checks msg's routing key for exchange e.
func (c *Config) routingKey(topic string, e Exchange, msg *message.Message) (key string, err error) {
	defer recoverUser("Config.RoutingKey", &err)
	key, err = c.RoutingKey(topic, msg)
	if err != nil {
		return "", fmt.Errorf("Config.RoutingKey: %w", err)
	}
	if key == "" && e.needsRoutingKey() {
		return "", fmt.Errorf("no routing key for %s exchange %q: set metadata %q (or Config.RoutingKey)", e.Kind, e.Name, RoutingKeyMetadataKey)
	}
	// Fanout and headers exchanges do not route by the key, but consumers
	// read it (delivery routing key, STOMP destination), so it is kept.
	if len(key) > amqpconn.MaxShortString {
		return "", fmt.Errorf("routing key is %d bytes, over the AMQP limit of %d", len(key), amqpconn.MaxShortString)
	}
	if !utf8.ValidString(key) {
		return "", fmt.Errorf("routing key %q is not valid UTF-8", key)
	}
	return key, nil
}

// checkPublishing rejects what a marshaler produced that amqp091-go could
// not encode, or that would break the guarantee, before anything is sent.
func checkPublishing(pub amqp.Publishing) error {
	if pub.DeliveryMode != amqp.Persistent {
		return fmt.Errorf("DeliveryMode is %d, not amqp.Persistent (2): a transient message is lost when the broker restarts although it was confirmed; set DeliveryMode: amqp.Persistent", pub.DeliveryMode)
	}
	if err := pub.Headers.Validate(); err != nil {
		return fmt.Errorf("headers cannot be sent over AMQP (use string, integer, bool, float, []byte, time.Time or amqp.Table values): %w", err)
	}
	if err := checkTableKeys(pub.Headers); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{
		{"ContentType", pub.ContentType}, {"ContentEncoding", pub.ContentEncoding},
		{"CorrelationId", pub.CorrelationId}, {"ReplyTo", pub.ReplyTo},
		{"Expiration", pub.Expiration}, {"MessageId", pub.MessageId},
		{"Type", pub.Type}, {"UserId", pub.UserId}, {"AppId", pub.AppId},
	} {
		if len(f.v) > amqpconn.MaxShortString {
			return fmt.Errorf("%s is %d bytes, over the AMQP limit of %d", f.name, len(f.v), amqpconn.MaxShortString)
		}
	}
	return nil
}

// checkTableKeys reports a header whose name, or a key of a table inside
// its value (in inner tables and arrays, at any depth), is over the AMQP
// short-string limit: amqp091-go would fail the write and drop the
// connection, costing every caller its unconfirmed messages.
func checkTableKeys(t amqp.Table) error {
	for k, v := range t {
		if len(k) > amqpconn.MaxShortString {
			return fmt.Errorf("header name %.40q... is %d bytes, over the AMQP limit of %d", k, len(k), amqpconn.MaxShortString)
		}
		if err := checkNestedKeys(v); err != nil {
			return fmt.Errorf("header %.40q: %w: AMQP cannot encode it; shorten that key", k, err)
		}
	}
	return nil
}

// checkNestedKeys checks the keys of the tables in v, a header value. The
// error says where, built only on failure: the check runs for every
// message.
func checkNestedKeys(v any) error {
	switch v := v.(type) {
	case amqp.Table:
		for k, x := range v {
			if len(k) > amqpconn.MaxShortString {
				return fmt.Errorf("key %.40q... is %d bytes, over the AMQP limit of %d", k, len(k), amqpconn.MaxShortString)
			}
			if err := checkNestedKeys(x); err != nil {
				return fmt.Errorf("in table key %.40q: %w", k, err)
			}
		}
	case []any:
		for i, x := range v {
			if err := checkNestedKeys(x); err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
		}
	}
	return nil
}
