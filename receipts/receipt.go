package receipts

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// Receipt is one tab's statement that the handler(s) of a message ran and
// resolved in that tab and the message was acked there. It does not say
// that a person saw it.
type Receipt struct {
	// MessageID is the id of the handled message: the Watermill UUID the
	// Publisher sent (the tab's amqp-message-id).
	MessageID string `json:"message_id"`
	// UserKey is the user part of the batch's routing key: for tab
	// sessions the key of tabsession's Handler.UserKey, in headers mode
	// the page's receipts.userKey. It comes from the routing key, which
	// the broker authorised, never from the body.
	UserKey string `json:"user_key"`
	// TabID is the tab part of the routing key (the tab's id).
	TabID string `json:"tab_id"`
	// Subscription is the name of the tab's subscription that handled it.
	Subscription string `json:"subscription"`
	// Stream is the stream of a stream subscription, "" for a per-tab
	// queue.
	Stream string `json:"stream,omitempty"`
	// Offset is the message's offset in Stream; 0 when Stream is "".
	Offset int64 `json:"offset,omitempty"`
	// HandledAt is when the tab's handler resolved, by the tab's clock,
	// to the millisecond.
	HandledAt time.Time `json:"handled_at"`
	// ReceivedAt is when this service decoded the batch, by its clock.
	ReceivedAt time.Time `json:"received_at"`
}

// Metadata keys of the Subscriber's receipt messages. The payload carries
// the whole Receipt as JSON (FromMessage reads it); these repeat its
// fields for routing, filtering and logs.
const (
	MetadataMessageID    = "receipt_message_id"
	MetadataTabID        = "receipt_tab_id"
	MetadataUserKey      = "receipt_user_key"
	MetadataSubscription = "receipt_subscription"
	// MetadataHandledAt is HandledAt in RFC 3339 with milliseconds.
	MetadataHandledAt = "receipt_handled_at"
)

// MessageUUID is the UUID of r's watermill message from the Subscriber:
// "<MessageID>/<TabID>", the same for every delivery of that receipt.
func (r Receipt) MessageUUID() string { return r.MessageID + "/" + r.TabID }

// toMessage is r as a watermill message: UUID MessageUUID, payload r as
// JSON, metadata the Metadata* keys.
func (r Receipt) toMessage() *message.Message {
	payload, err := json.Marshal(r)
	if err != nil { // a Receipt has only strings, an int and times that DecodeBatch bounded
		panic(fmt.Sprintf("receipts: marshal receipt: %v", err))
	}
	m := message.NewMessage(r.MessageUUID(), payload)
	m.Metadata.Set(MetadataMessageID, r.MessageID)
	m.Metadata.Set(MetadataTabID, r.TabID)
	m.Metadata.Set(MetadataUserKey, r.UserKey)
	m.Metadata.Set(MetadataSubscription, r.Subscription)
	m.Metadata.Set(MetadataHandledAt, r.HandledAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	return m
}

// FromMessage returns the Receipt a message of the Subscriber carries
// (its JSON payload). A message that is not one (a nil message, another
// payload, a receipt without message or tab id) gives an error wrapping
// ErrNotReceipt.
func FromMessage(msg *message.Message) (Receipt, error) {
	if msg == nil {
		return Receipt{}, fmt.Errorf("%w: nil message", ErrNotReceipt)
	}
	var r Receipt
	if err := json.Unmarshal(msg.Payload, &r); err != nil {
		return Receipt{}, fmt.Errorf("%w: message %s: payload is not a receipt: %v", ErrNotReceipt, msg.UUID, err)
	}
	if r.MessageID == "" || r.TabID == "" {
		return Receipt{}, fmt.Errorf("%w: message %s: payload has no message_id or tab_id", ErrNotReceipt, msg.UUID)
	}
	return r, nil
}
