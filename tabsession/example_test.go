package tabsession_test

import (
	"context"
	"errors"
	"html/template"
	"log"
	"net/http"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/durablews/durablews/tabsession"
)

// The page template embeds the prepared session as JSON (html/template
// encodes and escapes it for the script element) and hands it to the
// browser client's session.initial option.
var page = template.Must(template.New("page").Parse(`<!doctype html>
<ul id="orders">{{range .Orders}}<li>{{.}}</li>{{end}}</ul>
<script type="application/json" id="tab-session">{{.Session}}</script>
<script type="module">
  import { DurableClient } from '/web/durablews.js';
  const initial = document.getElementById('tab-session').textContent;
  const client = new DurableClient({ session: { url: '/durablews/session', initial } });
  client.on('customer.*.#', (msg) => addOrder(msg.json()));               // the tab's own queue
  client.subscribe({ stream: 'announcements' }, (msg) => addNews(msg.json())); // shared, from render time on
  client.connect();
</script>`))

// Render a page and receive every event published after it was rendered:
// Prepare creates the tab's queue before the page loads its state, so an
// event that happens while the page is on its way to the browser waits in
// the queue instead of falling into the gap. The session also grants the
// broadcast stream "announcements" (declared beforehand with
// broadcast.Declare), starting where the stream ended at render time.
func ExampleHandler_Prepare() {
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
		// Everyone reads the announcements: the token gets read on that
		// stream too, and nothing else of it.
		Streams: func(context.Context, string) ([]string, error) {
			return []string{"announcements"}, nil
		},
	}, watermill.NewStdLogger(false, false))
	if err != nil {
		log.Fatal(err)
	}
	defer sessions.Close()

	mux := http.NewServeMux()
	mux.Handle("POST /durablews/session", sessions) // renewals and reconnects
	mux.HandleFunc("GET /orders", func(w http.ResponseWriter, r *http.Request) {
		// First the session, then the state: an event that happens in
		// between is in both (make the page's handler idempotent), never
		// in neither.
		s, err := sessions.Prepare(r)
		switch {
		case errors.Is(err, tabsession.ErrUnauthenticated):
			http.Redirect(w, r, "/login", http.StatusSeeOther)
			return
		case err != nil:
			http.Error(w, "live updates are unavailable", http.StatusServiceUnavailable)
			return
		}
		user, _ := userFromCookie(r)
		_ = page.Execute(w, map[string]any{"Session": s, "Orders": loadOrders(r.Context(), user)})
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}

// userFromCookie stands for the application's session check.
func userFromCookie(r *http.Request) (string, error) {
	c, err := r.Cookie("app_session")
	if err != nil {
		return "", tabsession.ErrUnauthenticated
	}
	return c.Value, nil
}

// loadOrders stands for the application's database query.
func loadOrders(context.Context, string) []string { return nil }
