package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/brokertest"
)

// newTestApp starts the app on the shared broker with a unique exchange and
// removes the exchange afterwards. Its tab sessions have a random signing
// key: these tests never open one on the broker (tabsession.Handler dials only on
// an authenticated request), so the shared broker's configuration does not
// matter.
func newTestApp(t *testing.T, mods ...func(*appConfig)) (*app, *httptest.Server) {
	t.Helper()
	amqpURL := brokertest.AMQPURL()
	exchange := "durablews-example-test-" + randHex(6)
	key, _ := hex.DecodeString(randHex(32))
	cfg := appConfig{AMQPURL: amqpURL, Exchange: exchange, Stream: exchange + ".announcements", WebDir: "../web", SigningKey: key, Logger: &testLogger{t: t}}
	for _, m := range mods {
		m(&cfg)
	}
	a, err := newApp(cfg)
	if err != nil {
		t.Fatalf("newApp: %v", err)
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		h := &harness{amqpURL: amqpURL}
		if err := h.withChannel(func(ch *amqp.Channel) error { return ch.ExchangeDelete(exchange, false, false) }); err != nil {
			t.Errorf("delete exchange: %v", err)
		}
		if err := h.withChannel(func(ch *amqp.Channel) error { _, err := ch.QueueDelete(a.cfg.Stream, false, false, false); return err }); err != nil {
			t.Errorf("delete stream: %v", err)
		}
	})
	return a, srv
}

// The Go path without a browser: POST /api/events (form-encoded) -> router
// -> ForwardMiddleware -> Publisher -> exchange, with the per-customer
// routing key, the UUID as message id, persistent, JSON payload.
func TestPostEventsReachesTheExchange(t *testing.T) {
	a, srv := newTestApp(t)
	h := &harness{amqpURL: a.cfg.AMQPURL}
	conn, err := amqp.Dial(h.amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "customer.7.#", a.cfg.Exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	resp, err := http.PostForm(srv.URL+"/api/events", url.Values{"customer": {"7"}, "count": {"3"}, "event": {"order_paid"}})
	if err != nil {
		t.Fatal(err)
	}
	var out eventsResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(out.IDs) != 3 {
		t.Fatalf("POST /api/events: %s %+v", resp.Status, out)
	}
	// Other customers' events are not bound to this queue.
	resp, err = http.PostForm(srv.URL+"/api/events", url.Values{"customer": {"8"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	var got []string
	for len(got) < 3 {
		select {
		case d := <-deliveries:
			got = append(got, d.MessageId)
			if d.RoutingKey != "customer.7.order_paid" || d.DeliveryMode != amqp.Persistent {
				t.Errorf("delivery %s: routing key %q, delivery mode %d", d.MessageId, d.RoutingKey, d.DeliveryMode)
			}
			var ev orderEvent
			if err := json.Unmarshal(d.Body, &ev); err != nil || ev.Customer != "7" || ev.Event != "order_paid" {
				t.Errorf("payload %s: %+v %v", d.Body, ev, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d of 3 messages", len(got))
		}
	}
	if !slices.Equal(got, out.IDs) {
		t.Errorf("message ids %v, want the returned UUIDs %v in order", got, out.IDs)
	}
	select {
	case d := <-deliveries:
		t.Errorf("unexpected delivery %s with key %s", d.MessageId, d.RoutingKey)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestPostEventsRejectsBadInput(t *testing.T) {
	_, srv := newTestApp(t)
	for _, body := range []string{
		`{"customer":"4.2"}`,
		`{"customer":"42#"}`,
		`{"customer":""}`,
		`{"customer":"42","count":501}`,
		`{"customer":"42","count":-1}`,
		`{"customer":"42","event":"Order-Paid"}`,
		`{"customer":"42","colour":"red"}`,
		`not json`,
	} {
		resp, err := http.Post(srv.URL+"/api/events", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || out["error"] == "" {
			t.Errorf("%s: %s %v, want 400 with an error", body, resp.Status, out)
		}
	}
}

func TestServesPageClientAndConfig(t *testing.T) {
	a, srv := newTestApp(t)
	for path, want := range map[string]int{
		"/":                    200,
		"/?customer=42":        200,
		"/static/app.js":       200,
		"/static/style.css":    200,
		"/web/durablews.js":    200,
		"/web/internal.js":     200,
		"/web/client.js":       200, // the modules durablews.js imports (web/README.md, Source layout)
		"/web/subscription.js": 200,
		"/web/transport.js":    200,
		"/web/session.js":      200,
		"/web/tab.js":          200,
		"/web/errors.js":       200,
		"/web/defaults.js":     200,
		"/web/node_modules/@stomp/stompjs/esm6/index.js":  200,
		"/web/node_modules/@stomp/stompjs/esm6/client.js": 200,
		"/web/package.json":                    404,
		"/web/test/e2e.html":                   404,
		"/web/":                                404,
		"/web/node_modules/@stomp/stompjs/":    404,
		"/web/node_modules/.package-lock.json": 404,
		"/web/../go.mod":                       404,
		"/nope":                                404,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %s, want %d", path, resp.Status, want)
		}
		if want == 200 && strings.HasSuffix(path, ".js") && resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", path, resp.Header.Get("Content-Type"))
		}
	}

	resp, err := http.Get(srv.URL + "/api/config")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var cfg browserConfig
	if err := json.Unmarshal(body, &cfg); err != nil {
		t.Fatal(err)
	}
	// Tab sessions (the default): no broker credential and no broker URL in
	// the page's config; the page gets both per tab from /api/tab-session.
	if cfg.Mode != "session" || cfg.SessionURL != "/api/tab-session" || cfg.Exchange != a.cfg.Exchange ||
		cfg.Login != "" || cfg.Passcode != "" || cfg.WebSTOMPURL != "" || strings.Contains(string(body), "guest") {
		t.Errorf("/api/config in tab-session mode: %s", body)
	}
}

// Trusted mode hands the shared credentials to the page, and has no login or
// tab-session endpoint.
func TestTrustedModeConfig(t *testing.T) {
	a, srv := newTestApp(t, func(c *appConfig) { c.Trusted = true; c.SigningKey = nil })
	var cfg browserConfig
	getJSON(t, srv.URL+"/api/config", &cfg)
	if cfg.Mode != "trusted" || cfg.Exchange != a.cfg.Exchange || cfg.Login != "guest" || cfg.Passcode != "guest" || cfg.WebSTOMPURL != "ws://127.0.0.1:15674/ws" {
		t.Errorf("/api/config in trusted mode: %+v", cfg)
	}
	for _, p := range []string{"/api/login", "/api/tab-session"} {
		resp, err := http.Post(srv.URL+p, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s in trusted mode: %s", p, resp.Status)
		}
	}
}

// Without a signing key the demo refuses to start in tab-session mode and
// says what to do.
func TestTabSessionModeNeedsSigningKey(t *testing.T) {
	_, err := newApp(appConfig{WebDir: "../web", AMQPURL: "amqp://guest:guest@127.0.0.1:1/"})
	if err == nil || !strings.Contains(err.Error(), "rabbitmq-tab-sessions.sh") || !strings.Contains(err.Error(), "-trusted") {
		t.Errorf("no signing key: %v", err)
	}
}

// The demo login sets the cookie the tab-session endpoint authenticates;
// without it the endpoint answers 401, and cross-origin logins are refused.
func TestLoginAndTabSessionAuth(t *testing.T) {
	_, srv := newTestApp(t)
	post := func(path, ctype, body string, hdr map[string]string, cookies ...*http.Cookie) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		for _, c := range cookies {
			req.AddCookie(c)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	r := post("/api/login", "application/json", `{"customer":"42"}`, nil)
	if r.StatusCode != 200 {
		t.Fatalf("login: %s", r.Status)
	}
	var login *http.Cookie
	for _, c := range r.Cookies() {
		if c.Name == loginCookie {
			login = c
		}
	}
	if login == nil || login.Value != "42" || !login.HttpOnly || login.SameSite != http.SameSiteStrictMode {
		t.Errorf("login cookie: %+v", login)
	}
	if r := post("/api/login", "application/x-www-form-urlencoded", "customer=4%2F2", nil); r.StatusCode != 400 {
		t.Errorf("login with a bad customer id: %s", r.Status)
	}
	if r := post("/api/login", "application/json", `{"customer":"43"}`, map[string]string{"Sec-Fetch-Site": "cross-site"}); r.StatusCode != 403 {
		t.Errorf("cross-site login: %s", r.Status)
	}
	if r := post("/api/tab-session", "application/json", `{}`, nil); r.StatusCode != 401 {
		t.Errorf("tab session without login: %s", r.Status)
	}
	if r := post("/api/tab-session", "application/json", `{}`, nil, &http.Cookie{Name: loginCookie, Value: "../x"}); r.StatusCode != 401 {
		t.Errorf("tab session with a malformed login cookie: %s", r.Status)
	}
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestMissingWebDirSaysWhatToRun(t *testing.T) {
	_, err := newApp(appConfig{WebDir: filepath.Join(t.TempDir(), "web")})
	if err == nil || !strings.Contains(err.Error(), "-web-dir") {
		t.Errorf("missing web dir: %v", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "durablews.js"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = newApp(appConfig{WebDir: dir})
	if err == nil || !strings.Contains(err.Error(), "make web-deps") || !strings.Contains(err.Error(), "npm ci --prefix") {
		t.Errorf("missing node_modules: %v", err)
	}
}

// A request that runs out of time gets a 503 naming every unconfirmed event,
// and the router stops retrying them (no hang, no hot loop).
func TestPostEventsTimeoutReportsUnconfirmed(t *testing.T) {
	amqpURL := brokertest.AMQPURL()
	exchange := "durablews-example-test-" + randHex(6)
	a, err := newApp(appConfig{AMQPURL: amqpURL, Exchange: exchange, WebDir: "../web", PublishTimeout: time.Nanosecond, Trusted: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer func() {
		srv.Close()
		if err := a.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		h := &harness{amqpURL: amqpURL}
		_ = h.withChannel(func(ch *amqp.Channel) error { return ch.ExchangeDelete(exchange, false, false) })
	}()
	start := time.Now()
	for id, why := range postUnconfirmed(t, srv.URL, "42", 3) {
		if !strings.Contains(why, "context deadline exceeded") {
			t.Errorf("%s: %s", id, why)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

// postUnconfirmed posts count events for customer and expects a 503 naming
// each of them as not confirmed; it returns why, by event id.
func postUnconfirmed(t *testing.T, base, customer string, count int) map[string]string {
	t.Helper()
	resp, err := http.PostForm(base+"/api/events", url.Values{"customer": {customer}, "count": {strconv.Itoa(count)}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out eventsResponse
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || len(out.Failed) != count || len(out.IDs) != 0 {
		t.Fatalf("%s %+v, want 503 with %d failed", resp.Status, out, count)
	}
	return out.Failed
}

// A forward that keeps failing until the request times out is reported with
// its cause, not only the deadline: with several AMQP URLs (the cluster
// preset, Mandatory) an event no queue is bound for is unroutable, as when the
// node holding a tab's classic queue is down.
func TestPostEventsTimeoutNamesTheLastFailure(t *testing.T) {
	amqpURL := brokertest.AMQPURL()
	_, srv := newTestApp(t, func(c *appConfig) {
		c.AMQPURL, c.Trusted, c.PublishTimeout = amqpURL+","+amqpURL, true, 1500*time.Millisecond
	})
	// One event: events queued behind it in the same request may never get
	// an attempt, and are reported "not sent", which is what happened to them.
	for id, why := range postUnconfirmed(t, srv.URL, "nobody-"+randHex(4), 1) {
		if !strings.Contains(why, "unroutable") {
			t.Errorf("%s: %s, want the unroutable cause", id, why)
		}
	}
}

// -amqp and -ws take one URL or a comma-separated list: one URL keeps the
// single-broker configs, several give the publisher the cluster preset, the
// tab-session endpoint AMQPURLs/WebSTOMPURLs and a trusted page a url list.
func TestURLListsMapToClusterConfigs(t *testing.T) {
	if got := splitURLs(" a , b,,c "); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("splitURLs = %q, want [a b c]", got)
	}
	if got := splitURLs(" , "); len(got) != 0 {
		t.Errorf("splitURLs(blank list) = %q, want none", got)
	}
	_, err := newApp(appConfig{WebDir: "../web", AMQPURL: ",", Trusted: true})
	if err == nil || !strings.Contains(err.Error(), "lists no URL") {
		t.Errorf("newApp with an empty -amqp list: %v, want an error naming the empty list", err)
	}

	one := defaultAppConfig()
	if pc := publisherConfig(one); !slices.Equal(pc.URLs, []string{one.AMQPURL}) || pc.RetryNacks {
		t.Errorf("one AMQP URL: publisher URLs %q RetryNacks %v, want NewConfig's", pc.URLs, pc.RetryNacks)
	}
	if tc := tabSessionConfig(one); tc.AMQPURL != one.AMQPURL || tc.AMQPURLs != nil || tc.WebSTOMPURL != one.WebSTOMPURL || tc.WebSTOMPURLs != nil {
		t.Errorf("one URL each: tab sessions got %q/%q and %q/%q", tc.AMQPURL, tc.AMQPURLs, tc.WebSTOMPURL, tc.WebSTOMPURLs)
	}

	amqps := []string{"amqp://guest:guest@127.0.0.1:5681/", "amqp://guest:guest@127.0.0.1:5682/", "amqp://guest:guest@127.0.0.1:5683/"}
	wss := []string{"ws://127.0.0.1:15681/ws", "ws://127.0.0.1:15682/ws", "ws://127.0.0.1:15683/ws"}
	three := defaultAppConfig()
	three.AMQPURL, three.WebSTOMPURL, three.Trusted = strings.Join(amqps, ","), strings.Join(wss, ", "), true
	if pc := publisherConfig(three); !slices.Equal(pc.URLs, amqps) || !pc.RetryNacks || !pc.Mandatory {
		t.Errorf("three AMQP URLs: publisher URLs %q RetryNacks %v Mandatory %v, want the cluster preset", pc.URLs, pc.RetryNacks, pc.Mandatory)
	}
	if tc := tabSessionConfig(three); tc.AMQPURL != "" || !slices.Equal(tc.AMQPURLs, amqps) || tc.WebSTOMPURL != "" || !slices.Equal(tc.WebSTOMPURLs, wss) {
		t.Errorf("three URLs each: tab sessions got %q/%q and %q/%q", tc.AMQPURL, tc.AMQPURLs, tc.WebSTOMPURL, tc.WebSTOMPURLs)
	}

	for _, c := range []struct {
		cfg      appConfig
		url      string
		urls     []string
		wantJSON string
	}{
		{one, one.WebSTOMPURL, nil, `"webStompUrl":"ws://127.0.0.1:15674/ws"`},
		{three, "", wss, `"webStompUrls":["ws://127.0.0.1:15681/ws","ws://127.0.0.1:15682/ws","ws://127.0.0.1:15683/ws"]`},
	} {
		c.cfg.Trusted = true
		rec := httptest.NewRecorder()
		(&app{cfg: c.cfg}).handleConfig(rec, httptest.NewRequest("GET", "/api/config", nil))
		var got browserConfig
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("GET /api/config: %v (%s)", err, rec.Body)
		}
		var compact bytes.Buffer
		_ = json.Compact(&compact, rec.Body.Bytes())
		if got.WebSTOMPURL != c.url || !slices.Equal(got.WebSTOMPURLs, c.urls) || !strings.Contains(compact.String(), c.wantJSON) {
			t.Errorf("trusted page config %s: want %s", compact.String(), c.wantJSON)
		}
	}
}
