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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/durablews/durablews/internal/oauthbroker"
	"github.com/durablews/durablews/tabsession"
)

// A tab in tab-session mode (shared mode is the default), driven by /cmd.
var sharedSessionPage = template.Must(template.New("page").Parse(`<!doctype html>
<meta charset="utf-8">
<script type="importmap">{ "imports": { "@stomp/stompjs": "/web/node_modules/@stomp/stompjs/esm6/index.js" } }</script>
<script type="module">
  import { DurableClient } from '/web/durablews.js';
  const tag = {{.Tag}};
  const report = (ev) => fetch('/report', { method: 'POST', body: JSON.stringify({ tag, t: Date.now(), ...ev }), keepalive: true });
  if (tag !== 'L') { // L only opens the others
    const client = new DurableClient({ session: { url: '/session' }, heartbeatWorker: false, reconnect: { initialMs: 200, maxMs: 2000 } });
    client.on('state', (state, d) => report({ type: 'state', state, error: d.error?.message }));
    client.on('mode', (mode) => report({ type: 'mode', mode }));
    client.on('customer.#', (msg) => report({ type: 'shown', id: msg.id }));
    client.connect().then(() => report({ type: 'claimed', tabId: client.tabId, mode: client.mode }));
  }
  for (;;) {
    const r = await fetch('/cmd?tag=' + tag).catch(() => null);
    if (r && r.status === 200) {
      const cmd = await r.json();
      if (cmd.op === 'close') window.close();
      if (cmd.op === 'open') window.open('/page?tag=' + cmd.tag, '_blank');
    } else await new Promise((r) => setTimeout(r, 200));
  }
</script>`))

// Issue 22 with tab sessions: the tabs of one browser share one Web-STOMP
// connection; the leader's session request names the tabs that joined and
// its token reads their queues (tabsession's "tabs"). A tab opened later
// makes the leader reconnect with a token that reads its queue too; the
// leader closing hands the connection to another tab. Each tab shows every
// event once throughout.
func TestSharedSessionsInChromium(t *testing.T) {
	chromium := requireBrowser(t)
	const exchange = "dw-shared-sessions"
	sn := startSessionNode(t, exchange)
	node, key := sn.node, sn.key
	publish := func(id string) {
		t.Helper()
		if err := sn.publish(exchange, "customer.42.order_paid", id); err != nil {
			t.Error(err)
		}
	}

	sessions, err := tabsession.NewHandler(tabsession.Config{
		AMQPURL:      node.AMQPURL(),
		WebSTOMPURL:  node.WebSTOMPURL(),
		SigningKey:   key,
		KeyID:        oauthbroker.KeyID,
		Authenticate: func(*http.Request) (string, error) { return "42", nil },
		Bindings: func(context.Context, string) ([]tabsession.Binding, error) {
			return []tabsession.Binding{{Exchange: exchange, Key: "customer.42.#"}}, nil
		},
	}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sessions.Close() })

	var (
		mu       sync.Mutex
		events   []map[string]any
		cmds     = map[string][]string{}
		leaderRq int // session requests naming other tabs
	)
	mux := http.NewServeMux()
	mux.Handle("/web/", http.StripPrefix("/web/", http.FileServer(http.Dir("."))))
	mux.HandleFunc("POST /session", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.Contains(string(b), `"tabs"`) {
			mu.Lock()
			leaderRq++
			mu.Unlock()
		}
		r.Body = io.NopCloser(strings.NewReader(string(b)))
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
	mux.HandleFunc("GET /cmd", func(w http.ResponseWriter, r *http.Request) {
		tag := r.URL.Query().Get("tag")
		mu.Lock()
		defer mu.Unlock()
		if q := cmds[tag]; len(q) > 0 {
			cmds[tag] = q[1:]
			_, _ = w.Write([]byte(q[0]))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {
		_ = sharedSessionPage.Execute(w, map[string]any{"Tag": r.URL.Query().Get("tag")})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	send := func(tag, cmd string) {
		mu.Lock()
		cmds[tag] = append(cmds[tag], cmd)
		mu.Unlock()
	}

	dir := t.TempDir()
	browser := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-popup-blocking",
		"--user-data-dir="+dir, srv.URL+"/page?tag=L")
	browser.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := browser.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-browser.Process.Pid, syscall.SIGKILL)
		_ = browser.Wait()
	})

	// of: the events of tag and type, in arrival order.
	of := func(tag, typ string) []map[string]any {
		mu.Lock()
		defer mu.Unlock()
		var out []map[string]any
		for _, e := range events {
			if e["tag"] == tag && e["type"] == typ {
				out = append(out, e)
			}
		}
		return out
	}
	lastState := func(tag string) string {
		s := of(tag, "state")
		if len(s) == 0 {
			return ""
		}
		return fmt.Sprint(s[len(s)-1]["state"])
	}
	shown := func(tag, id string) int {
		n := 0
		for _, e := range of(tag, "shown") {
			if e["id"] == id {
				n++
			}
		}
		return n
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(40 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				mu.Lock()
				tail := events[max(0, len(events)-30):]
				mu.Unlock()
				t.Fatalf("timeout waiting for %s; last events %v", what, tail)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	stompConnections := func() []string {
		req, _ := http.NewRequest(http.MethodGet, node.ManagementURL()+"/api/connections", nil)
		req.SetBasicAuth(node.Username(), node.Password())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var conns []struct {
			Name     string `json:"name"`
			User     string `json:"user"`
			Protocol string `json:"protocol"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&conns); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range conns {
			if strings.Contains(c.Protocol, "STOMP") {
				out = append(out, c.Name+" user "+c.User)
			}
		}
		return out
	}
	waitConnections := func(n int) []string {
		t.Helper()
		var got []string
		waitFor(fmt.Sprintf("%d Web-STOMP connection(s)", n), func() bool {
			got = stompConnections()
			return len(got) == n
		})
		return got
	}

	tags := []string{"T0", "T1", "T2"}
	for _, tag := range tags {
		send("L", `{"op":"open","tag":"`+tag+`"}`)
	}
	for _, tag := range tags {
		waitFor(tag+" connected", func() bool { return lastState(tag) == "connected" && len(of(tag, "claimed")) > 0 })
	}
	users := waitConnections(1)
	t.Logf("3 tabs in tab-session mode: Web-STOMP connections %q", users)

	check := func(what string, among []string, ids []string) {
		t.Helper()
		for _, tag := range among {
			waitFor(tag+" shows "+what, func() bool {
				for _, id := range ids {
					if shown(tag, id) == 0 {
						return false
					}
				}
				return true
			})
		}
		time.Sleep(500 * time.Millisecond) // a duplicate would come now
		lost, twice := 0, 0
		for _, tag := range among {
			for _, id := range ids {
				switch n := shown(tag, id); {
				case n == 0:
					lost++
				case n > 1:
					twice++
				}
			}
		}
		t.Logf("%s: %d events to %d tabs: lost %d, shown twice %d", what, len(ids), len(among), lost, twice)
		if lost != 0 || twice != 0 {
			t.Errorf("%s: lost %d, shown twice %d", what, lost, twice)
		}
	}
	var ids []string
	for i := 1; i <= 10; i++ {
		id := fmt.Sprintf("a%d", i)
		ids = append(ids, id)
		publish(id)
	}
	check("the first events", tags, ids)

	// A tab opened later: the leader reconnects with a token that reads its queue.
	send("L", `{"op":"open","tag":"T3"}`)
	tags = append(tags, "T3")
	waitFor("T3 connected", func() bool { return lastState("T3") == "connected" })
	var later []string
	for i := 11; i <= 20; i++ {
		id := fmt.Sprintf("a%d", i)
		later = append(later, id)
		publish(id)
	}
	check("events after a fourth tab joined", tags, later)
	check("every event in the first three tabs", tags[:3], append(ids, later...))
	waitConnections(1)

	// The leader closes while events are published.
	var leader string
	for _, tag := range tags {
		if m := of(tag, "mode"); len(m) > 0 && m[len(m)-1]["mode"] == "shared-leader" {
			leader = tag
		}
	}
	if leader == "" {
		t.Errorf("no tab reported mode shared-leader")
	} else {
		var rest []string
		for _, tag := range tags {
			if tag != leader {
				rest = append(rest, tag)
			}
		}
		closed := time.Now()
		send(leader, `{"op":"close"}`)
		var late []string
		for i := 21; i <= 40; i++ {
			id := fmt.Sprintf("a%d", i)
			late = append(late, id)
			publish(id)
			time.Sleep(20 * time.Millisecond)
		}
		check("events while the leader closed", rest, late)
		waitConnections(1)
		t.Logf("leader %s closed: the others showed everything and were on one connection again %v after the close (publishing 20 events 20 ms apart included)", leader, time.Since(closed).Round(time.Millisecond))
	}
	mu.Lock()
	t.Logf("leader session requests (with tabs): %d", leaderRq)
	mu.Unlock()
	if leaderRq == 0 {
		t.Errorf("no session request named the other tabs")
	}
}
