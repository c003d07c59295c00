package durablews_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/receipts"
)

// Publish an event for customer 42's browser tabs. Publish returns nil only
// once RabbitMQ has confirmed the message, so it survives a broker restart
// and reaches every tab queue bound to customer.42.#.
func ExamplePublisher() {
	cfg := durablews.NewConfig("amqp://guest:guest@127.0.0.1:5672/",
		durablews.Exchange{Name: "durablews-example-events"}, // a durable topic exchange
	)
	pub, err := durablews.NewPublisher(cfg, watermill.NopLogger{})
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"order":1001,"status":"paid"}`))
	msg.Metadata.Set(durablews.RoutingKeyMetadataKey, "customer.42.order_paid")

	if err := pub.Publish("durablews-example-events", msg); err != nil {
		log.Fatal(err) // a *durablews.PublishError names every unconfirmed message
	}
	fmt.Println("confirmed")
	// Output: confirmed
}

// A failed batch says which messages were not confirmed and why.
func ExamplePublishError() {
	cfg := durablews.NewConfig("amqp://guest:guest@127.0.0.1:5672/", durablews.Exchange{Name: "durablews-example-events"})
	pub, err := durablews.NewPublisher(cfg, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	ok := message.NewMessage("11111111-1111-1111-1111-111111111111", []byte(`{}`))
	ok.Metadata.Set(durablews.RoutingKeyMetadataKey, "customer.1.ping")
	noKey := message.NewMessage("22222222-2222-2222-2222-222222222222", []byte(`{}`))

	err = pub.Publish("durablews-example-events", ok, noKey)
	fmt.Println(err)
	// Output: durablews: publish to topic "durablews-example-events": 2 of 2 messages not confirmed; message 0 (11111111-1111-1111-1111-111111111111): not sent: another message of this batch is invalid, so none was published; message 1 (22222222-2222-2222-2222-222222222222): invalid message: no usable routing key: no routing key for topic exchange "durablews-example-events": set metadata "routing_key" (or Config.RoutingKey)
}

// Forward the events a Watermill router consumes to browser tabs. The
// source message is acked only after RabbitMQ confirmed the forward; if the
// forward fails the router nacks it and the source bus redelivers it.
func ExampleForwardMiddleware() {
	pub, err := durablews.NewPublisher(durablews.NewConfig("amqp://guest:guest@127.0.0.1:5672/",
		durablews.Exchange{Name: "durablews-example-events"}), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	forward, err := durablews.ForwardMiddleware(durablews.Forward{
		Publisher: pub,
		Topic:     "durablews-example-events",
		RoutingKey: func(m *message.Message) (string, error) {
			return "customer." + m.Metadata.Get("customer_id") + ".order_paid", nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}

	// Any Watermill subscriber works as the source: Kafka, AMQP, SQL, NATS...
	source := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, nil)
	defer source.Close()
	router, err := message.NewRouter(message.RouterConfig{}, nil)
	if err != nil {
		log.Fatal(err)
	}
	router.AddMiddleware(middleware.CorrelationID, forward)
	router.AddConsumerHandler("orders-to-browsers", "orders", source, func(msg *message.Message) error {
		return nil // the service's own handling, if any
	})
	go func() { _ = router.Run(context.Background()) }()
	<-router.Running()
	defer router.Close()

	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"order":1001}`))
	msg.Metadata.Set("customer_id", "42")
	if err := source.Publish("orders", msg); err != nil { // returns once the router acked it
		log.Fatal(err)
	}
	fmt.Println("acked after the broker confirmed the forward")
	// Output: acked after the broker confirmed the forward
}

// Hold each source message's ack until a browser tab sent a delivery
// receipt for its forward (package receipts). A forward no tab confirmed
// within ReceiptTimeout fails with ErrNoReceipt: the router retries it
// (same UUID; the tab drops the duplicate, and a late receipt still
// counts), then hands it to the poison queue.
func ExampleForward_receipts() {
	const url = "amqp://guest:guest@127.0.0.1:5672/"
	pub, err := durablews.NewPublisher(durablews.NewConfig(url, durablews.Exchange{Name: "durablews-example-events"}), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()
	sub, err := receipts.NewSubscriber(receipts.Config{URL: url, Queue: "orders.receipts"}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	tracker, err := receipts.NewTracker(receipts.TrackerConfig{Subscriber: sub}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tracker.Close()

	forward, err := durablews.ForwardMiddleware(durablews.Forward{
		Publisher:      pub,
		Topic:          "durablews-example-events",
		Receipts:       tracker,
		ReceiptTimeout: 30 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	source := gochannel.NewGoChannel(gochannel.Config{}, nil) // any Watermill subscriber
	defer source.Close()
	poison, err := middleware.PoisonQueueWithFilter(source, "undelivered", func(err error) bool {
		return errors.Is(err, durablews.ErrNoReceipt)
	})
	if err != nil {
		log.Fatal(err)
	}
	router, err := message.NewRouter(message.RouterConfig{}, nil)
	if err != nil {
		log.Fatal(err)
	}
	router.AddMiddleware(poison, middleware.Retry{MaxRetries: 3, InitialInterval: time.Second}.Middleware, forward)
	router.AddConsumerHandler("orders-to-browsers", "orders", source, func(*message.Message) error { return nil })
	if err := router.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// Publish to a cluster: give every node's URL. Each Publisher starts on a
// random node and fails over to the others; nacks while a quorum queue
// elects a new leader are retried; a message no queue takes is an error.
//
// Here only the first node is up (nothing listens on the other two ports,
// as if those nodes were down), and no tab queue is bound for customer.42.
func ExampleNewClusterConfig() {
	cfg := durablews.NewClusterConfig([]string{
		"amqp://guest:guest@127.0.0.1:5672/",
		"amqp://guest:guest@127.0.0.1:5698/",
		"amqp://guest:guest@127.0.0.1:5699/",
	}, durablews.Exchange{Name: "durablews-example-events"})
	pub, err := durablews.NewPublisher(cfg, nil) // skips the nodes that are down
	if err != nil {
		log.Fatal(err)
	}
	defer pub.Close()

	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"order":1001,"status":"paid"}`))
	msg.Metadata.Set(durablews.RoutingKeyMetadataKey, "customer.42.order_paid")
	err = pub.Publish("durablews-example-events", msg)
	fmt.Println("no tab queue for customer 42:", errors.Is(err, durablews.ErrUnroutable))
	// Output: no tab queue for customer 42: true
}
