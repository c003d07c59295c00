package broadcast_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/broadcast"
)

// Declare a stream for prices shared by every tab, publish into it with
// the ordinary Publisher, and take the position a page rendered now
// starts reading at.
func ExampleDeclare() {
	ctx := context.Background()
	conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	// The exchange must exist before the stream is bound to it
	// (durablews setup -exchanges declares it too).
	ch, err := conn.Channel()
	if err != nil {
		log.Fatal(err)
	}
	if err := ch.ExchangeDeclare("durablews-example-events", "topic", true, false, false, false, nil); err != nil {
		log.Fatal(err)
	}
	_ = ch.Close()

	cfg := durablews.NewConfig("amqp://guest:guest@127.0.0.1:5672/",
		durablews.Exchange{Name: "durablews-example-events"})
	pub, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	err = broadcast.Declare(ctx, conn, broadcast.Config{
		Stream:         "durablews-example-prices",
		Exchange:       "durablews-example-events",
		BindingKeys:    []string{"price.#"},
		MaxAge:         24 * time.Hour, // retention is required
		MaxLengthBytes: 100 << 20,
	})
	if err != nil {
		log.Fatal(err)
	}

	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"sku":"A1","price":12.5}`))
	msg.Metadata.Set(durablews.RoutingKeyMetadataKey, "price.A1")
	if err := pub.Publish("durablews-example-events", msg); err != nil {
		log.Fatal(err) // confirmed means: stored in the stream
	}

	// At page render time, before reading the state the page shows.
	pos, err := broadcast.EndPosition(ctx, conn, "durablews-example-prices", 0)
	if err != nil {
		log.Fatal(err)
	}
	page, _ := json.Marshal(map[string]any{"stream": "durablews-example-prices", "position": pos})
	_ = page // embed in the HTML; the page subscribes with x-stream-offset: pos.Header()
	fmt.Println(pos.Kind)
	// Output: last
}
