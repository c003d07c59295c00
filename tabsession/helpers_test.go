package tabsession_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/coder/websocket"
	"github.com/go-stomp/stomp/v3"
	"github.com/golang-jwt/jwt/v5"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/oauthbroker"
	"github.com/durablews/durablews/internal/stomptab"
	"github.com/durablews/durablews/internal/testbroker"
	"github.com/durablews/durablews/tabsession"
)

// fakeApp is the application around the Handler: a cookie session store
// and a per-user list of allowed bindings, which a test may change.
type fakeApp struct {
	mu       sync.Mutex
	sessions map[string]string // cookie value -> user
	banned   map[string]bool
	allowed  map[string][]tabsession.Binding
}

const sessionCookie = "app_session"

func newFakeApp() *fakeApp {
	return &fakeApp{
		sessions: map[string]string{"c-alice": "alice", "c-bob": "bob", "c-mallory": "mallory"},
		banned:   map[string]bool{"mallory": true},
		allowed: map[string][]tabsession.Binding{
			"alice":   {{Exchange: "events", Key: "customer.alice.#"}, {Exchange: "events", Key: "announcements.#"}},
			"bob":     {{Exchange: "events", Key: "customer.bob.#"}},
			"mallory": {{Exchange: "events", Key: "#"}},
		},
	}
}

func (a *fakeApp) authenticate(r *http.Request) (string, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", fmt.Errorf("no session cookie: %w", tabsession.ErrUnauthenticated)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	user, ok := a.sessions[c.Value]
	switch {
	case !ok:
		return "", fmt.Errorf("unknown session: %w", tabsession.ErrUnauthenticated)
	case a.banned[user]:
		return "", fmt.Errorf("user %s is banned: %w", user, tabsession.ErrForbidden)
	}
	return user, nil
}

func (a *fakeApp) bindings(_ context.Context, user string) ([]tabsession.Binding, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]tabsession.Binding(nil), a.allowed[user]...), nil
}

func (a *fakeApp) setAllowed(user string, b ...tabsession.Binding) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.allowed[user] = b
}

// tabEnv is the private broker, the application and the session endpoint
// shared by the subtests of TestTabSessions.
type tabEnv struct {
	node     *testbroker.Node
	files    oauthbroker.Files // the script's files of node (newOAuthEnv)
	key      []byte
	app      *fakeApp
	sessions *tabsession.Handler
	srv      *httptest.Server
	client   *http.Client
	admin    *amqp.Connection
	pub      *durablews.Publisher
}

// newOAuthEnv starts a private node configured by
// scripts/rabbitmq-tab-sessions.sh (opts: extra node settings), with the
// topic exchange "events", an admin connection (the internal backend's
// guest) and a publisher, and returns the config of a Handler for it and
// the script's apply; handlers are added with withHandler.
func newOAuthEnv(t *testing.T, opts testbroker.Options) (*tabEnv, tabsession.Config, oauthbroker.Result) {
	t.Helper()
	start := time.Now()
	node, files, apply := oauthbroker.Start(t, opts)
	t.Logf("RabbitMQ %s node configured for tab sessions in %v", node.Version().Name, time.Since(start).Round(time.Millisecond))
	key, err := tabsession.LoadSigningKey(files.KeyFile)
	require.NoError(t, err)
	admin, err := amqp.Dial(node.AMQPURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close() })
	ach, err := admin.Channel()
	require.NoError(t, err)
	require.NoError(t, ach.ExchangeDeclare("events", "topic", true, false, false, false, nil))
	require.NoError(t, ach.Close())
	pub, err := durablews.NewPublisher(durablews.NewConfig(node.AMQPURL(), durablews.Exchange{Name: "events"}), nil)
	require.NoError(t, err, "the service's internal user must still log in next to the OAuth 2 backend")
	t.Cleanup(func() { _ = pub.Close() })
	app := newFakeApp()
	mgmt := url.URL{Scheme: "http", User: url.UserPassword(node.Username(), node.Password()), Host: strings.TrimPrefix(node.ManagementURL(), "http://")}
	cfg := tabsession.Config{
		AMQPURL:       node.AMQPURL(),
		ManagementURL: mgmt.String(),
		WebSTOMPURL:   node.WebSTOMPURL(),
		Authenticate:  app.authenticate,
		Bindings:      app.bindings,
		SigningKey:    key,
		KeyID:         oauthbroker.KeyID,
	}
	transport := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(transport.CloseIdleConnections)
	e := &tabEnv{node: node, files: files, key: key, app: app, admin: admin, pub: pub,
		client: &http.Client{Transport: transport, Timeout: 30 * time.Second}}
	return e, cfg, apply
}

// withHandler returns a copy of e whose requests go to a new Handler made
// from cfg (closed at the end of the test).
func (e *tabEnv) withHandler(t *testing.T, cfg tabsession.Config, logger watermill.LoggerAdapter) *tabEnv {
	t.Helper()
	h, err := tabsession.NewHandler(cfg, logger)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, h.Close()) })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c := *e
	c.sessions, c.srv = h, srv
	return &c
}

// sessionResult is one response of the session endpoint.
type sessionResult struct {
	status  int
	header  http.Header
	session tabsession.Session
	errBody struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	raw string
}

func (e *tabEnv) request(t *testing.T, method, cookie, contentType, body string, extra ...[2]string) sessionResult {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+"/durablews/session", strings.NewReader(body))
	require.NoError(t, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
	}
	for _, h := range extra {
		req.Header.Set(h[0], h[1])
	}
	resp, err := e.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	r := sessionResult{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	if resp.StatusCode == http.StatusOK {
		require.NoError(t, json.Unmarshal(raw, &r.session), "body: %s", raw)
	} else {
		require.NoError(t, json.Unmarshal(raw, &r.errBody), "body: %s", raw)
		assert.NotEmpty(t, r.errBody.Error, "body: %s", raw)
		assert.NotEmpty(t, r.errBody.Message, "body: %s", raw)
	}
	return r
}

// serveDirect sends a session request (POST, JSON) straight to h, e.g. a
// Handler with another config than the test server's.
func serveDirect(h http.Handler, cookie, body string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
	h.ServeHTTP(rec, req)
	return rec
}

// open asks for a session as the given user cookie and requires 200.
func (e *tabEnv) open(t *testing.T, cookie, body string) tabsession.Session {
	t.Helper()
	r := e.request(t, http.MethodPost, cookie, "application/json", body)
	require.Equal(t, http.StatusOK, r.status, "body: %s", r.raw)
	return r.session
}

func (e *tabEnv) publish(t *testing.T, key, body string) {
	t.Helper()
	m := message.NewMessage(watermill.NewUUID(), []byte(body))
	m.Metadata.Set(durablews.RoutingKeyMetadataKey, key)
	require.NoError(t, e.pub.Publish("events", m))
}

// ready returns the ready-message count of a queue (through the internal
// admin user).
func (e *tabEnv) ready(t *testing.T, queue string) int {
	t.Helper()
	q, ok, err := stomptab.InspectQueue(e.admin, queue)
	require.NoError(t, err)
	require.True(t, ok, "queue %s does not exist", queue)
	return q.Messages
}

// deleteQueue deletes a tab queue through the internal admin user.
func (e *tabEnv) deleteQueue(t *testing.T, queue string) {
	t.Helper()
	ch, err := e.admin.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDelete(queue, false, false, false)
	require.NoError(t, err)
	require.NoError(t, ch.Close())
}

func (e *tabEnv) queueExists(t *testing.T, queue string) bool {
	t.Helper()
	ok, err := stomptab.QueueExists(e.admin, queue)
	require.NoError(t, err)
	return ok
}

// bindingsOf lists "exchange key" of every binding to queue (default
// exchange excluded), via rabbitmqctl.
func (e *tabEnv) bindingsOf(t *testing.T, queue string) []string {
	t.Helper()
	out, err := e.node.Ctl("list_bindings", "-q", "--no-table-headers", "source_name", "destination_name", "routing_key")
	require.NoError(t, err)
	var got []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		if len(f) == 3 && f[0] != "" && f[1] == queue {
			got = append(got, f[0]+" "+f[2])
		}
	}
	return got
}

// queueInfo is GET /api/queues/%2F/<queue> of the management API.
func (e *tabEnv) queueInfo(t *testing.T, queue string) map[string]any {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.node.ManagementURL()+"/api/queues/%2F/"+url.PathEscape(queue), nil)
	require.NoError(t, err)
	req.SetBasicAuth(e.node.Username(), e.node.Password())
	resp, err := e.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var q map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&q))
	return q
}

// logWatch finds lines the broker logged after it was created. The
// broker logs each refusal with its reason (on 3.10.8 the STOMP ERROR
// frame of a refused SUBSCRIBE never reaches the client).
type logWatch struct {
	path string
	from int64
}

func (e *tabEnv) watchLog(t *testing.T) logWatch {
	t.Helper()
	p := filepath.Join(e.node.LogDir(), e.node.Name()+".log")
	st, err := os.Stat(p)
	require.NoError(t, err)
	return logWatch{path: p, from: st.Size()}
}

// wait returns the first new log line containing every part.
func (w logWatch) wait(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(w.path)
		require.NoError(t, err)
		if int64(len(data)) > w.from {
			for _, line := range strings.Split(string(data[w.from:]), "\n") {
				ok := true
				for _, p := range parts {
					ok = ok && strings.Contains(line, p)
				}
				if ok {
					return strings.TrimSpace(line)
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker log has no line with %q since the attempt; new lines:\n%s", parts, data[min(w.from, int64(len(data))):])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dialTab connects like the browser: passcode = token, login ignored.
func dialTab(t *testing.T, s tabsession.Session) *stomptab.Tab {
	t.Helper()
	return brokertest.DialTab(t, stomptab.Options{URL: s.URL, Host: s.Vhost, Login: "", Passcode: s.Token})
}

// nextBody waits for the next message of sub.
func nextBody(t *testing.T, sub *stomptab.Subscription, d time.Duration) stomptab.Message {
	t.Helper()
	m, err := sub.Next(brokertest.Ctx(t, d))
	require.NoError(t, err)
	require.NoError(t, sub.Ack(m))
	return m
}

// rawSTOMP is a go-stomp connection over Web-STOMP for frames stomptab does
// not send (SEND).
func rawSTOMP(t *testing.T, wsURL, vhost, token string) (*stomp.Conn, error) {
	t.Helper()
	ctx := brokertest.Ctx(t, 10*time.Second)
	ws, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{Subprotocols: []string{"v12.stomp"}})
	if err != nil {
		return nil, err
	}
	life, cancel := context.WithCancel(context.Background())
	conn, err := stomp.Connect(websocket.NetConn(life, ws, websocket.MessageText),
		stomp.ConnOpt.Host(vhost), stomp.ConnOpt.Login("", token), stomp.ConnOpt.HeartBeat(0, 0))
	if err != nil {
		cancel()
		_ = ws.CloseNow()
		return nil, err
	}
	t.Cleanup(func() {
		_ = conn.MustDisconnect()
		cancel()
		_ = ws.CloseNow()
	})
	return conn, nil
}

// amqpWithToken opens an AMQP 0-9-1 connection with the token as password:
// the same backends answer there, and AMQP reports refusals in full.
func amqpWithToken(t *testing.T, n *testbroker.Node, token string) *amqp.Channel {
	t.Helper()
	u := url.URL{Scheme: "amqp", User: url.UserPassword("tab", token), Host: n.AMQPAddr(), Path: "/"}
	conn, err := amqp.Dial(u.String())
	require.NoError(t, err, "a tab token opens an AMQP connection too (same auth backends)")
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	require.NoError(t, err)
	return ch
}

func requireAccessRefused(t *testing.T, err error, contains string) {
	t.Helper()
	var ae *amqp.Error
	require.ErrorAs(t, err, &ae)
	assert.Equal(t, amqp.AccessRefused, ae.Code, "%v", ae)
	assert.Contains(t, ae.Reason, contains)
	t.Logf("refused: %v", ae)
}

// parseClaims decodes a token's claims after verifying it with key.
func parseClaims(t *testing.T, token string, key []byte) (jwt.MapClaims, map[string]any) {
	t.Helper()
	claims := jwt.MapClaims{}
	tok, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return key, nil },
		jwt.WithValidMethods([]string{"HS256"}))
	require.NoError(t, err)
	return claims, tok.Header
}

// closedPort returns host:port of a local port nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func sortedKeys(m map[string]any) []string {
	keys := slices.Collect(maps.Keys(m))
	slices.Sort(keys)
	return keys
}
