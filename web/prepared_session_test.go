package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/durablews/durablews/broadcast"
	"github.com/durablews/durablews/internal/oauthbroker"
	"github.com/durablews/durablews/tabsession"
)

// The page: state rendered by the server, the session tabsession.Prepare
// opened while rendering, and the browser client started from it.
var preparedPage = template.Must(template.New("page").Parse(`<!doctype html>
<meta charset="utf-8">
<script type="importmap">{ "imports": { "@stomp/stompjs": "/web/node_modules/@stomp/stompjs/esm6/index.js" } }</script>
<ul id="state">{{range .State}}<li>{{.}}</li>{{end}}</ul>
<script type="application/json" id="tab-session">{{.Session}}</script>
<script type="module">
  import { DurableClient } from '/web/durablews.js';
  const report = (ev) => fetch('/report', { method: 'POST', body: JSON.stringify(ev), keepalive: true });
  const initial = document.getElementById('tab-session').textContent;
  const client = new DurableClient({ session: { url: '/session', initial }, heartbeatWorker: false });
  client.on('state', (state, d) => report({ type: 'state', state, error: d.error?.message }));
  client.on('customer.#', (msg) => report({ type: 'shown', id: msg.id, redelivered: msg.redelivered }));
  client.subscribe({ stream: 'dw-prepared-news' }, (msg) => report({ type: 'news', id: msg.id, offset: msg.offset }));
  client.connect();
</script>`))

// Point 4 of issue 13: events published after the server rendered the page
// (tabsession.Handler.Prepare) but before the browser connected are shown,
// none twice, and the first connection needs no session request. The same
// for a broadcast stream the session grants: the page starts it where
// Prepare found its end, so what is published before the page connects is
// shown, and what was there before Prepare is not.
func TestPreparedSessionInChromium(t *testing.T) {
	chromium := requireBrowser(t)
	const exchange = "dw-prepared"
	sn := startSessionNode(t, exchange)
	node, key, conn := sn.node, sn.key, sn.conn
	if err := broadcast.Declare(context.Background(), conn, broadcast.Config{Stream: "dw-prepared-news", Exchange: exchange, BindingKeys: []string{"news"}, MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	publishTo := func(key, id string) {
		t.Helper()
		if err := sn.publish(exchange, key, id); err != nil {
			t.Fatal(err)
		}
	}
	publish := func(id string) { publishTo("customer.42.order_paid", id) }
	publishTo("news", "news-before-render") // in the rendered state: not shown again

	sessions, err := tabsession.NewHandler(tabsession.Config{
		AMQPURL:      node.AMQPURL(),
		WebSTOMPURL:  node.WebSTOMPURL(),
		SigningKey:   key,
		KeyID:        oauthbroker.KeyID,
		Authenticate: func(*http.Request) (string, error) { return "42", nil },
		Bindings: func(context.Context, string) ([]tabsession.Binding, error) {
			return []tabsession.Binding{{Exchange: exchange, Key: "customer.42.#"}}, nil
		},
		Streams: func(context.Context, string) ([]string, error) { return []string{"dw-prepared-news"}, nil },
	}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sessions.Close() })

	var (
		mu           sync.Mutex
		events       []map[string]any
		sessionPosts int
		queue        string
	)
	mux := http.NewServeMux()
	mux.Handle("/web/", http.StripPrefix("/web/", http.FileServer(http.Dir("."))))
	mux.HandleFunc("POST /session", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sessionPosts++
		mu.Unlock()
		sessions.ServeHTTP(w, r)
	})
	mux.HandleFunc("POST /report", func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		b, _ := io.ReadAll(r.Body)
		if json.Unmarshal(b, &ev) == nil {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		}
	})
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {
		s, err := sessions.Prepare(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		mu.Lock()
		queue = s.Queue
		mu.Unlock()
		state := []string{"order 1 paid (rendered)"}
		// Events of the gap: after the session, before the page connects.
		for i := 1; i <= 3; i++ {
			publish(fmt.Sprintf("gap-%d", i))
		}
		publishTo("news", "news-gap")
		_ = preparedPage.Execute(w, map[string]any{"Session": s, "State": state})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	dir := t.TempDir()
	browser := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+dir, srv.URL+"/page")
	browser.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := browser.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-browser.Process.Pid, syscall.SIGKILL)
		_ = browser.Wait()
	})

	var news []string
	snapshot := func() ([]string, []string, int) {
		mu.Lock()
		defer mu.Unlock()
		var shown, states []string
		news = nil
		for _, e := range events {
			switch e["type"] {
			case "news":
				news = append(news, fmt.Sprint(e["id"]))
			case "shown":
				shown = append(shown, fmt.Sprint(e["id"]))
			case "state":
				states = append(states, fmt.Sprint(e["state"]))
			}
		}
		return shown, states, sessionPosts
	}
	waitFor := func(what string, ok func(shown, states []string) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			shown, states, _ := snapshot()
			if ok(shown, states) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timeout waiting for %s; shown %v, states %v", what, shown, states)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("connected", func(_, states []string) bool { return slices.Contains(states, "connected") })
	for i := 1; i <= 2; i++ {
		publish(fmt.Sprintf("live-%d", i))
	}
	publishTo("news", "news-live")
	want := []string{"gap-1", "gap-2", "gap-3", "live-1", "live-2"}
	waitFor("every event", func(shown, _ []string) bool { return len(shown) >= len(want) && len(news) >= 2 })
	time.Sleep(500 * time.Millisecond) // a duplicate would arrive now
	shown, states, posts := snapshot()
	if !slices.Equal(shown, want) {
		t.Errorf("shown %v, want %v (each once, in order)", shown, want)
	}
	if want := []string{"news-gap", "news-live"}; !slices.Equal(news, want) {
		t.Errorf("stream: shown %v, want %v (from the end Prepare found, each once)", news, want)
	}
	if posts != 0 {
		t.Errorf("%d session requests: the first connection should have used the prepared session", posts)
	}
	if !slices.Equal(states, []string{"connecting", "connected"}) {
		t.Errorf("states %v, want [connecting connected]", states)
	}
	t.Logf("queue %s: shown %v with the prepared session, %d session requests; stream: shown %v", queue, shown, posts, news)
}
