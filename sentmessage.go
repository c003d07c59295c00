package durablews

import (
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// sentMessage is a message a pipeline sent and awaits the confirm of.
type sentMessage struct {
	out  *outgoing
	dc   *amqp.DeferredConfirmation
	ret  *awaitedReturn // nil unless Mandatory
	sent time.Time
}
