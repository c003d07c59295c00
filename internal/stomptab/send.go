package stomptab

import (
	"context"
	"errors"
	"strconv"

	"github.com/go-stomp/stomp/v3/frame"
)

// Send sends a persistent message to destination (a STOMP SEND with
// content-type, persistent:true and the extra headers) and waits for the
// broker's RECEIPT: RabbitMQ's STOMP plugin sends it once the broker
// confirmed the message (publisher confirms), so a nil error means the
// message is stored. It is how the browser client sends delivery receipts
// (docs/receipts.md). A refused SEND ends the connection with an ERROR
// frame (errors.Is(err, ErrBrokerClosed)).
func (t *Tab) Send(ctx context.Context, destination, contentType string, body []byte, headers ...[2]string) error {
	if destination == "" {
		return errors.New("stomptab: Send needs a destination")
	}
	f := frame.New(frame.SEND, frame.Destination, destination, frame.ContentType, contentType,
		frame.ContentLength, strconv.Itoa(len(body)), "persistent", "true")
	for _, h := range headers {
		f.Header.Add(h[0], h[1])
	}
	f.Body = body
	return t.request(ctx, f)
}
