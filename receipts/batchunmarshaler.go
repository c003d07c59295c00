package receipts

import (
	"errors"
	"strconv"

	"github.com/ThreeDotsLabs/watermill"
	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v2/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Metadata of the batch message batchUnmarshaler makes: what the
// Subscriber needs of the delivery besides its body.
const (
	batchRoutingKey  = "routing_key"
	batchRedelivered = "redelivered"
)

// batchUnmarshaler turns a batch delivery into one watermill message
// (payload = the body), which the Subscriber then splits into receipts.
// It never fails: watermill-amqp would nack (requeue) a delivery that does
// not unmarshal, and a batch that cannot be read would come back forever;
// the Subscriber refuses such a batch instead.
//
// Batches from the Web-STOMP plugin carry neither an AMQP message id nor
// watermill's UUID header (watermill-amqp's DefaultMarshaler would give
// them the UUID ""), so a batch without either gets a new UUID.
type batchUnmarshaler struct{}

var _ wamqp.Marshaler = batchUnmarshaler{}

func (batchUnmarshaler) Marshal(*message.Message) (amqp.Publishing, error) {
	return amqp.Publishing{}, errors.New("receipts: the subscriber's marshaler does not publish; tabs send receipts (NewPublishing makes one in Go)")
}

func (batchUnmarshaler) Unmarshal(d amqp.Delivery) (*message.Message, error) {
	uuid := d.MessageId
	if uuid == "" {
		uuid, _ = d.Headers[wamqp.DefaultMessageUUIDHeaderKey].(string)
	}
	if uuid == "" {
		uuid = watermill.NewUUID()
	}
	m := message.NewMessage(uuid, d.Body)
	m.Metadata.Set(batchRoutingKey, d.RoutingKey)
	m.Metadata.Set(batchRedelivered, strconv.FormatBool(d.Redelivered))
	return m, nil
}
