package durablews

import (
	"fmt"
	"time"

	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v2/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
)

// Metadata keys DefaultMarshaler also copies into AMQP properties, so AMQP
// consumers see them as properties and STOMP clients as the standard
// content-type and correlation-id headers.
const (
	ContentTypeMetadataKey   = "content_type"
	CorrelationIDMetadataKey = "correlation_id"
)

// DefaultContentType is used when a message has no ContentTypeMetadataKey.
const DefaultContentType = "application/json"

// watermillUUIDHeader is where watermill-amqp's DefaultMarshaler keeps the
// UUID. Marshal writes it too, so a watermill-amqp subscriber with its
// default marshaler reads the right UUID; Unmarshal reads it from
// messages of watermill-amqp producers.
const watermillUUIDHeader = wamqp.DefaultMessageUUIDHeaderKey

// DefaultMarshaler is the wire format between Watermill messages and AMQP. It
// implements watermill-amqp's Marshaler interface, so a watermill-amqp
// subscriber configured with it reads exactly what the Publisher wrote.
//
// Marshal writes:
//   - DeliveryMode persistent, so the message survives a broker restart in
//     a durable queue;
//   - MessageId = the Watermill UUID; a STOMP client sees it as the
//     amqp-message-id header and de-duplicates redeliveries by it;
//   - ContentType from metadata content_type, default application/json;
//   - CorrelationId from metadata correlation_id, when present;
//   - Timestamp = now;
//   - every metadata entry as a string header (the only header type, with
//     integers, that reaches STOMP clients);
//   - the UUID again in the _watermill_message_uuid header, where
//     watermill-amqp's DefaultMarshaler looks for it.
//
// Metadata cannot use the _watermill_message_uuid key (Marshal refuses it).
// A metadata entry named PublishTokenHeader is left out (the Publisher sets
// that header itself with Config.Mandatory), so a message read by
// watermill-amqp's marshaler can be forwarded as it is.
// Unmarshal restores UUID, metadata and payload exactly; it leaves out the
// PublishTokenHeader header, which is not metadata. watermill-amqp's
// DefaultMarshaler reads the same UUID, metadata and payload, so either
// marshaler works on the consuming side.
type DefaultMarshaler struct {
	// Now returns the publishing timestamp; default time.Now. Tests set it.
	Now func() time.Time
}

// Marshal implements watermill-amqp's Marshaler.
func (m DefaultMarshaler) Marshal(msg *message.Message) (amqp.Publishing, error) {
	if msg == nil {
		return amqp.Publishing{}, fmt.Errorf("durablews: cannot marshal a nil message")
	}
	if err := checkShortString("message UUID", msg.UUID); err != nil {
		return amqp.Publishing{}, err
	}
	headers := make(amqp.Table, len(msg.Metadata)+1)
	for k, v := range msg.Metadata {
		if err := checkHeaderName(k); err != nil {
			return amqp.Publishing{}, err
		}
		if k == PublishTokenHeader {
			continue // the Publisher's, e.g. read by watermill-amqp from a message being forwarded
		}
		headers[k] = v
	}
	headers[watermillUUIDHeader] = msg.UUID
	contentType := msg.Metadata.Get(ContentTypeMetadataKey)
	if contentType == "" {
		contentType = DefaultContentType
	}
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	return amqp.Publishing{
		Headers:       headers,
		ContentType:   contentType,
		CorrelationId: msg.Metadata.Get(CorrelationIDMetadataKey),
		DeliveryMode:  amqp.Persistent,
		MessageId:     msg.UUID,
		Timestamp:     now(),
		Body:          msg.Payload,
	}, nil
}

// Unmarshal implements watermill-amqp's Marshaler.
func (m DefaultMarshaler) Unmarshal(d amqp.Delivery) (*message.Message, error) {
	uuid := d.MessageId
	if uuid == "" {
		uuid, _ = d.Headers[watermillUUIDHeader].(string)
	}
	msg := message.NewMessage(uuid, d.Body)
	for k, v := range d.Headers {
		if k == watermillUUIDHeader || k == PublishTokenHeader {
			continue
		}
		switch v := v.(type) {
		case string:
			msg.Metadata.Set(k, v)
		case []byte:
			msg.Metadata.Set(k, string(v))
		default:
			// Other producers may send typed headers; keep them readable.
			msg.Metadata.Set(k, fmt.Sprint(v))
		}
	}
	return msg, nil
}

// checkHeaderName rejects metadata keys that AMQP cannot carry as a header
// table key (a short string of 1..255 bytes).
func checkHeaderName(k string) error {
	if k == "" {
		return fmt.Errorf("durablews: metadata key is empty: AMQP headers need a name")
	}
	if k == watermillUUIDHeader {
		return fmt.Errorf("durablews: metadata key %q is reserved: the marshaler writes the message UUID there", k)
	}
	if len(k) > amqpconn.MaxShortString { // describe the key only when it fails
		return checkShortString(fmt.Sprintf("metadata key %.40q", k), k)
	}
	return nil
}

func checkShortString(what, s string) error {
	if s == "" {
		return fmt.Errorf("durablews: %s is empty", what)
	}
	if len(s) > amqpconn.MaxShortString {
		return fmt.Errorf("durablews: %s is %d bytes, over the AMQP limit of %d", what, len(s), amqpconn.MaxShortString)
	}
	return nil
}
