package receipts_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/receipts"
)

// A Go test tab sends receipts exactly as the browser client does; the
// service decodes them with the routing key's user and tab.
func ExampleEncodeBatch() {
	body, err := receipts.EncodeBatch("k3xq7r2m", []receipts.Entry{
		{ID: "5b9f2c1e", Subscription: "orders", HandledAt: time.UnixMilli(1718000000123)},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(body))

	key, _ := receipts.RoutingKey("0123456789abcdef", "k3xq7r2m")
	rs, err := receipts.DecodeBatch(key, body, time.Now())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rs[0].UserKey, rs[0].TabID, rs[0].MessageID, rs[0].HandledAt.Format(time.RFC3339Nano))

	// A body naming another tab than its routing key is refused.
	_, err = receipts.DecodeBatch("0123456789abcdef.othertab", body, time.Now())
	fmt.Println(err)
	// Output:
	// {"v":1,"tab":"k3xq7r2m","receipts":[{"id":"5b9f2c1e","sub":"orders","at":1718000000123}]}
	// 0123456789abcdef k3xq7r2m 5b9f2c1e 2024-06-10T06:13:20.123Z
	// receipts: batch with routing key 0123456789abcdef.othertab names tab "k3xq7r2m" in its body; refused
}

// Declare the receipts exchange and the service's durable queue at deploy
// time, so receipts sent before the service first runs wait for it.
func ExampleDeclareQueue() {
	conn, err := amqp.Dial("amqp://guest:guest@127.0.0.1:5672/")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	err = receipts.DeclareQueue(conn, receipts.Queue{
		Name:   "orders.receipts",
		Quorum: true, // on a cluster
	})
	if err != nil {
		log.Fatal(err)
	}
}

// A service consumes its receipts queue with a Tracker, waits for a tab
// of a user to handle a message, and falls back to e-mail if none does.
func ExampleTracker() {
	sub, err := receipts.NewSubscriber(receipts.Config{
		URL:   "amqp://guest:guest@127.0.0.1:5672/",
		Queue: "orders.receipts",
	}, watermill.NewStdLogger(false, false))
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	tracker, err := receipts.NewTracker(receipts.TrackerConfig{
		Subscriber: sub,
		OnReceipt: func(r receipts.Receipt) {
			log.Printf("tab %s of %s handled %s", r.TabID, r.UserKey, r.MessageID)
		},
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tracker.Close()

	msgID, userKey := "5b9f2c1e", "0123456789abcdef" // after publishing the message to the user's tabs
	tracker.ExpectUser(msgID, userKey, time.Minute, func(id string) {
		log.Printf("no tab of %s handled %s within a minute: sending an e-mail", userKey, id)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := tracker.WaitUser(ctx, msgID, userKey)
	if err != nil {
		log.Printf("not yet: %v", err)
		return
	}
	log.Printf("handled in tab %s at %v", r.TabID, r.HandledAt)
}

// A Router handler consumes the Subscriber; FromMessage reads each receipt.
func ExampleFromMessage() {
	sub, err := receipts.NewSubscriber(receipts.Config{
		URL:   "amqp://guest:guest@127.0.0.1:5672/",
		Queue: "audit.receipts",
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	msgs, err := sub.Subscribe(context.Background(), "#")
	if err != nil {
		log.Fatal(err)
	}
	for msg := range msgs {
		r, err := receipts.FromMessage(msg)
		if err != nil {
			log.Print(err)
		} else {
			log.Printf("%s handled %s (%s)", r.TabID, r.MessageID, r.Subscription)
		}
		msg.Ack() // the batch is acked once all its receipts are
	}
}
