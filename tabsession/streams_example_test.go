package tabsession_test

import (
	"context"
	"log"
	"net/http"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/broadcast"
	"github.com/durablews/durablews/tabsession"
)

// Grant every tab read access to a shared broadcast stream next to its
// private queue. The page subscribes to both: the queue for the user's own
// events, the stream for what everyone shares; a page rendered with
// Prepare starts the stream where it stood at render time.
func ExampleConfig_streams() {
	conn, err := amqp.Dial("amqp://svc:secret@127.0.0.1:5672/")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	// The stream must exist before a session grants it.
	err = broadcast.Declare(context.Background(), conn, broadcast.Config{
		Stream:      "announcements",
		Exchange:    "events",
		BindingKeys: []string{"announcements"},
		MaxAge:      24 * time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}

	key, err := tabsession.LoadSigningKey("/var/lib/durablews/dev-signing-key")
	if err != nil {
		log.Fatal(err)
	}
	sessions, err := tabsession.NewHandler(tabsession.Config{
		AMQPURL:      "amqp://svc:secret@127.0.0.1:5672/",
		WebSTOMPURL:  "wss://events.example.com/ws",
		SigningKey:   key,
		Authenticate: userFromCookie,
		Bindings: func(_ context.Context, user string) ([]tabsession.Binding, error) {
			return []tabsession.Binding{{Exchange: "events", Key: "customer." + user + ".#"}}, nil
		},
		// Everyone reads the announcements; the token can read that stream
		// and the tab's own queue, nothing else.
		Streams: func(context.Context, string) ([]string, error) {
			return []string{"announcements"}, nil
		},
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer sessions.Close()
	// In the page:
	//   client.on('customer.*.#', onOrder);                          // the tab's queue
	//   client.subscribe({ stream: 'announcements' }, onAnnouncement); // the stream
	http.Handle("POST /durablews/session", sessions)
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", nil))
}
