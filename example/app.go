package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/broadcast"
	"github.com/durablews/durablews/tabsession"
)

//go:embed static
var staticFiles embed.FS

// ordersTopic is the in-process Watermill topic the domain events go through
// before the router forwards them to browsers.
const ordersTopic = "orders"

// Metadata keys of the domain events; the forward builds the routing key
// customer.<customer_id>.<event_type> from them.
const (
	metaCustomer  = "customer_id"
	metaEventType = "event_type"
)

// maxEventsPerRequest bounds POST /api/events.
const maxEventsPerRequest = 500

// maxWaitMs bounds POST /api/events' wait_ms.
const maxWaitMs = 20000

var (
	customerRE  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)
	eventTypeRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)
	demoEvents  = []string{"order_created", "order_paid", "order_shipped", "order_delivered"}
)

// appConfig configures the demo app. Zero fields get the defaults of
// defaultAppConfig.
type appConfig struct {
	// Addr is the HTTP listen address, e.g. "127.0.0.1:8080" (":0" in tests).
	Addr string
	// AMQPURL is the broker the Go side publishes to: one URL, or a
	// comma-separated list of one URL per cluster node (the publisher then
	// uses durablews.NewClusterConfig).
	AMQPURL string
	// WebSTOMPURL is the Web-STOMP endpoint the page connects to: one URL, or
	// a comma-separated list of every node's (the page's client rotates over
	// them; see web/README.md "Several nodes").
	WebSTOMPURL string
	// Exchange is the durable topic exchange events are published to and
	// browser tabs bind their queues to.
	Exchange string
	// Stream is the broadcast stream of announcements every page shows
	// (declared at startup, bound to Exchange with key announcementsKey).
	Stream string
	// WebDir is the browser client's directory (durablews.js and
	// node_modules/@stomp/stompjs), served under /web/.
	WebDir string

	// Trusted switches from tab sessions (the default) to the
	// subscribe-by-headers mode: every page gets BrowserLogin and
	// BrowserPasscode from GET /api/config and declares and binds its own
	// queue. Any visitor can read those credentials and bind to any
	// customer's events, so this is only for brokers not configured for tab
	// sessions, on a trusted network.
	Trusted bool
	// BrowserLogin and BrowserPasscode are the STOMP credentials of the
	// Trusted mode (default guest/guest). Unused with tab sessions.
	BrowserLogin    string
	BrowserPasscode string

	// SigningKey is the HS256 key the broker's OAuth 2 backend trusts
	// (tabsession.LoadSigningKey of the file scripts/rabbitmq-tab-sessions.sh
	// writes). Required unless Trusted.
	SigningKey []byte
	// KeyID is the key's kid in the broker's config (the script's
	// DURABLEWS_TABS_KEY_ID, default "durablews-dev").
	KeyID string
	// ManagementURL, optional, lets tab sessions remove revoked bindings at
	// renewal; see tabsession.Config.
	ManagementURL string

	// QueueExpiresMs is the x-expires lease of each tab's queue: a tab that
	// stays away longer gets a fresh, empty queue. Keep it stable: RabbitMQ
	// refuses a SUBSCRIBE whose x-expires differs from the existing queue's,
	// and tabsession.Handler keeps an existing queue's.
	QueueExpiresMs int
	// QuorumQueues makes tab-session queues quorum queues (replicated over
	// a cluster's nodes: tabsession.QueueQuorum) instead of classic ones.
	QuorumQueues bool

	// PublishTimeout bounds one POST /api/events, including waiting for
	// RabbitMQ's confirms (and for receipts, with wait_ms).
	PublishTimeout time.Duration
	// FallbackAfter: an event no tab of its customer handled within this
	// (no delivery receipt) is listed by GET /api/fallbacks, where a real
	// service would send an e-mail instead. Default 5 s.
	FallbackAfter time.Duration

	// Logger for the publisher, router and app; nil logs nothing.
	Logger watermill.LoggerAdapter
}

func defaultAppConfig() appConfig {
	return appConfig{
		Addr:            "127.0.0.1:8080",
		AMQPURL:         "amqp://guest:guest@127.0.0.1:5672/",
		WebSTOMPURL:     "ws://127.0.0.1:15674/ws",
		Exchange:        "durablews-demo",
		Stream:          "durablews-demo.announcements",
		WebDir:          "web",
		BrowserLogin:    "guest",
		BrowserPasscode: "guest",
		KeyID:           "durablews-dev",
		QueueExpiresMs:  15 * 60 * 1000,
		PublishTimeout:  30 * time.Second,
		FallbackAfter:   5 * time.Second,
	}
}

func (c *appConfig) setDefaults() {
	d := defaultAppConfig()
	set := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	set(&c.Addr, d.Addr)
	set(&c.AMQPURL, d.AMQPURL)
	set(&c.WebSTOMPURL, d.WebSTOMPURL)
	set(&c.Exchange, d.Exchange)
	set(&c.Stream, d.Stream)
	set(&c.WebDir, d.WebDir)
	set(&c.BrowserLogin, d.BrowserLogin)
	set(&c.BrowserPasscode, d.BrowserPasscode)
	set(&c.KeyID, d.KeyID)
	if c.QueueExpiresMs == 0 {
		c.QueueExpiresMs = d.QueueExpiresMs
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = d.PublishTimeout
	}
	if c.FallbackAfter == 0 {
		c.FallbackAfter = d.FallbackAfter
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// app is the demo: an HTTP server whose POST /api/events emits domain events
// on an in-process Watermill GoChannel; a router forwards them with
// durablews.ForwardMiddleware through a durablews.Publisher to a RabbitMQ
// topic exchange, from where browser tabs receive them over Web-STOMP.
type app struct {
	cfg    appConfig
	logger watermill.LoggerAdapter

	pub      *durablews.Publisher
	sessions *tabsession.Handler // nil in Trusted mode
	receipts *receiptsSide
	metrics  *appMetrics
	untrack  func() // ends the metrics' in-flight tracking of pub
	source   *gochannel.GoChannel
	router   *message.Router
	stopRun  context.CancelFunc
	runDone  chan struct{}

	handler http.Handler
	orderNo atomic.Int64

	mu        sync.Mutex
	srv       *http.Server
	url       string
	closeOnce sync.Once
	closeErr  error
}

// newApp checks the web dir, declares the exchange, connects the publisher
// and starts the router. It serves nothing until Start (or use Handler).
func newApp(cfg appConfig) (*app, error) {
	cfg.setDefaults()
	if err := checkWebDir(cfg.WebDir); err != nil {
		return nil, err
	}
	if len(splitURLs(cfg.AMQPURL)) == 0 || len(splitURLs(cfg.WebSTOMPURL)) == 0 {
		return nil, fmt.Errorf("AMQP URL %q or Web-STOMP URL %q lists no URL: give one URL, or one per cluster node separated by commas", cfg.AMQPURL, cfg.WebSTOMPURL)
	}
	for _, u := range splitURLs(cfg.WebSTOMPURL) {
		if !strings.HasPrefix(u, "ws://") && !strings.HasPrefix(u, "wss://") {
			return nil, fmt.Errorf("Web-STOMP URL %q must start with ws:// or wss://", u)
		}
	}
	if !cfg.Trusted && len(cfg.SigningKey) == 0 {
		return nil, errNoSigningKey
	}
	// Browser tabs bind their queues to the exchange as soon as they open,
	// and the Publisher declares it only on its first publish: declare it now
	// (same arguments as the Publisher) so a tab opened first can subscribe.
	if err := declareTopology(cfg); err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, logger: cfg.Logger, runDone: make(chan struct{})}
	a.orderNo.Store(1000)

	var err error
	if a.receipts, err = newReceiptsSide(cfg); err != nil {
		return nil, err
	}
	if !cfg.Trusted {
		if a.sessions, err = newTabSessions(cfg); err != nil {
			_ = a.receipts.Close()
			return nil, err
		}
	}
	pcfg := publisherConfig(cfg)
	if a.metrics, err = newAppMetrics(cfg.Exchange, a.receipts); err == nil {
		pcfg.Observer = a.metrics.publisher
		a.pub, err = durablews.NewPublisher(pcfg, cfg.Logger)
	}
	if err != nil {
		if a.sessions != nil {
			_ = a.sessions.Close()
		}
		_ = a.receipts.Close()
		return nil, err
	}
	a.untrack = a.metrics.publisher.Track(a.pub)

	// The "service bus" of this demo. Publish blocks until the router acked
	// the event, which it does only after RabbitMQ confirmed the forward; the
	// event carries the HTTP request's context (PreserveContext), so a
	// request that gives up stops the forward too.
	a.source = gochannel.NewGoChannel(gochannel.Config{
		BlockPublishUntilSubscriberAck: true,
		PreserveContext:                true,
	}, cfg.Logger)

	forward, err := durablews.ForwardMiddleware(durablews.Forward{
		Publisher: a.pub,
		Topic:     cfg.Exchange,
		RoutingKey: func(m *message.Message) (string, error) {
			return routingKey(m.Metadata.Get(metaCustomer), m.Metadata.Get(metaEventType))
		},
	})
	if err != nil {
		a.closeBackends()
		return nil, err
	}
	a.router, err = message.NewRouter(message.RouterConfig{CloseTimeout: cfg.PublishTimeout + 5*time.Second}, cfg.Logger)
	if err != nil {
		a.closeBackends()
		return nil, err
	}
	// settle is outermost: it sees the forward's result.
	a.router.AddMiddleware(a.settle, forward)
	a.router.AddConsumerHandler("orders-to-browsers", ordersTopic, a.source, func(*message.Message) error {
		return nil // a real service would handle the order event here
	})
	ctx, cancel := context.WithCancel(context.Background())
	a.stopRun = cancel
	go func() {
		defer close(a.runDone)
		if err := a.router.Run(ctx); err != nil {
			a.logger.Error("Router stopped", err, nil)
		}
	}()
	select {
	case <-a.router.Running():
	case <-a.runDone:
		a.closeBackends()
		return nil, errors.New("watermill router did not start")
	}
	a.handler = a.routes()
	return a, nil
}

// loginCookie is the demo's stand-in for an application session: it holds
// the customer id the visitor "logged in" as through POST /api/login. A
// real application authenticates its own session here instead.
const loginCookie = "customer"

var errNoSigningKey = errors.New("tab sessions need the broker's signing key (-signing-key; run `bash scripts/rabbitmq-tab-sessions.sh` to configure the broker), or use -trusted on a trusted network")

// newTabSessions is the tab-session endpoint: the user is the customer of
// the login cookie, and the only binding a customer may have is
// customer.<id>.# on the demo exchange. The broker declares nothing for
// the page: tabsession.Handler declares the tab's queue with the demo's own AMQP
// user and hands the page a token that can only read that queue.
func newTabSessions(cfg appConfig) (*tabsession.Handler, error) {
	if len(cfg.SigningKey) == 0 {
		return nil, errNoSigningKey
	}
	return tabsession.NewHandler(tabSessionConfig(cfg), cfg.Logger)
}

// splitURLs splits a -amqp or -ws value, one URL or a comma-separated list,
// dropping blanks around and between the commas.
func splitURLs(s string) []string {
	var urls []string
	for u := range strings.SplitSeq(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

// publisherConfig is durablews.NewConfig for one AMQP URL, and the cluster
// preset (durablews.NewClusterConfig: fail over between nodes, retry nacks)
// for several. On every new connection (after a broker restart, a failover)
// it re-asserts the announcements stream and waits until the stream takes
// messages again before anything is (re)published, as the README says a
// stream publisher must: RabbitMQ 3.10 confirms messages routed to a stream
// that is still recovering without storing them.
func publisherConfig(cfg appConfig) durablews.Config {
	urls := splitURLs(cfg.AMQPURL)
	c := durablews.NewConfig(cfg.AMQPURL, durablews.Exchange{Name: cfg.Exchange})
	if len(urls) > 1 {
		c = durablews.NewClusterConfig(urls, durablews.Exchange{Name: cfg.Exchange})
	}
	c.OnConnect = func(ctx context.Context, conn *amqp.Connection) error {
		if err := declareAnnouncements(ctx, conn, cfg); err != nil {
			return err
		}
		return broadcast.WaitReady(ctx, conn, cfg.Stream)
	}
	return c
}

// tabSessionConfig maps the demo's config to the tab-session endpoint's:
// several AMQP or Web-STOMP URLs go to AMQPURLs and WebSTOMPURLs.
func tabSessionConfig(cfg appConfig) tabsession.Config {
	c := tabsession.Config{
		AMQPURL:       cfg.AMQPURL,
		ManagementURL: cfg.ManagementURL,
		WebSTOMPURL:   cfg.WebSTOMPURL,
		SigningKey:    cfg.SigningKey,
		KeyID:         cfg.KeyID,
		QueueExpires:  time.Duration(cfg.QueueExpiresMs) * time.Millisecond,
		QueueType:     map[bool]string{false: tabsession.QueueClassic, true: tabsession.QueueQuorum}[cfg.QuorumQueues],
		// Each tab may send delivery receipts to the demo's receipts
		// exchange, with its own routing key only.
		Receipts:         true,
		ReceiptsExchange: receiptsExchange(cfg),
		Authenticate: func(r *http.Request) (string, error) {
			c, err := r.Cookie(loginCookie)
			if err != nil || !customerRE.MatchString(c.Value) {
				return "", tabsession.ErrUnauthenticated
			}
			return c.Value, nil
		},
		Bindings: func(_ context.Context, customer string) ([]tabsession.Binding, error) {
			// Never "customer." + customer + ".#": an id holding '.', '*'
			// or '#' would widen the binding to other customers' events.
			// Authenticate already allows only [A-Za-z0-9_-]; BindingPattern
			// refuses anything else on its own.
			key, err := tabsession.BindingPattern(tabsession.AnyWords, "customer", customer)
			if err != nil {
				return nil, err
			}
			return []tabsession.Binding{{Exchange: cfg.Exchange, Key: key}}, nil
		},
		// Every customer reads the announcements stream.
		Streams: func(context.Context, string) ([]string, error) { return []string{cfg.Stream}, nil },
	}
	if urls := splitURLs(cfg.AMQPURL); len(urls) > 1 {
		c.AMQPURL, c.AMQPURLs = "", urls
	}
	if urls := splitURLs(cfg.WebSTOMPURL); len(urls) > 1 {
		c.WebSTOMPURL, c.WebSTOMPURLs = "", urls
	}
	return c
}

// handleLogin is POST /api/login {"customer": "42"} (JSON or form): the
// demo's pretend login. It sets the login cookie that the tab-session
// endpoint authenticates. Anyone can be any customer here; it stands in for
// the application's real login and session check.
func (a *app) handleLogin(w http.ResponseWriter, r *http.Request) {
	customer, ok := readField(w, r, "customer", 1<<10)
	if !ok {
		return
	}
	if !customerRE.MatchString(customer) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "customer must be 1-32 of A-Z a-z 0-9 _ -"})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: customer, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]string{"customer": customer})
}

// readField reads the one field of a small request body: JSON
// {"<name>": "..."} or a form field of that name, at most limit bytes. On a
// malformed body it answers 400 itself and returns false.
func readField(w http.ResponseWriter, r *http.Request, name string, limit int64) (string, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return r.FormValue(name), true
	}
	var body map[string]json.RawMessage
	var v string
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad JSON: " + err.Error()})
		return "", false
	}
	if raw, ok := body[name]; ok {
		if err := json.Unmarshal(raw, &v); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("bad JSON: %s: %v", name, err)})
			return "", false
		}
	}
	return v, true
}

// checkWebDir fails with what to run when the browser client or its
// dependency is missing.
func checkWebDir(dir string) error {
	if st, err := os.Stat(filepath.Join(dir, "durablews.js")); err != nil || st.IsDir() {
		abs, _ := filepath.Abs(dir)
		return fmt.Errorf("browser client not found: %s has no durablews.js (run from the repository root, or pass -web-dir path/to/web)", abs)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@stomp", "stompjs", "esm6", "index.js")); err != nil {
		return fmt.Errorf("%s is missing: run `make web-deps` (or `npm ci --prefix %s`) first",
			filepath.Join(dir, "node_modules", "@stomp", "stompjs"), dir)
	}
	return nil
}

// declareTopology declares the exchange and the announcements stream bound
// to it.
// With several AMQP URLs it uses the first node that answers.
func declareTopology(cfg appConfig) error {
	var conn *amqp.Connection
	var errs []error
	for _, u := range splitURLs(cfg.AMQPURL) {
		c, err := amqp.DialConfig(u, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err == nil {
			conn = c
			break
		}
		errs = append(errs, err)
	}
	if conn == nil {
		return fmt.Errorf("cannot connect to RabbitMQ (run `make broker`, or `make cluster` for a cluster's URLs): %w", errors.Join(errs...))
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open AMQP channel: %w", err)
	}
	if err := ch.ExchangeDeclare(cfg.Exchange, durablews.KindTopic, true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange %q: %w", cfg.Exchange, err)
	}
	if err := ch.Close(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return declareAnnouncements(ctx, conn, cfg)
}

func routingKey(customer, eventType string) (string, error) {
	if !customerRE.MatchString(customer) {
		return "", fmt.Errorf("invalid customer id %q", customer)
	}
	if !eventTypeRE.MatchString(eventType) {
		return "", fmt.Errorf("invalid event type %q", eventType)
	}
	return tabsession.BindingKey("customer", customer, eventType)
}

// outcomes collects the forward result of each event of one request. It
// travels in the events' context.
type outcomes struct {
	mu  sync.Mutex
	err map[string]error // UUID -> nil (confirmed) or why not
}

type outcomesKey struct{}

func (o *outcomes) set(uuid string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.err[uuid] = err
}

func (o *outcomes) get(uuid string) (err error, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	err, ok = o.err[uuid]
	return err, ok
}

// settle reports the forward's outcome to the waiting HTTP request. A failed
// forward is nacked, so GoChannel delivers the event again (after a pause,
// not in a hot loop) while the request still waits; once the request gave up
// (its context is done), the event is acked and the request reports it as not
// confirmed, naming the failure that made it retry (e.g. unroutable while a
// cluster node holding the tab's classic queue is down).
func (a *app) settle(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		produced, err := h(msg)
		ctx := msg.Context()
		o, _ := ctx.Value(outcomesKey{}).(*outcomes)
		if err == nil {
			if o != nil {
				o.set(msg.UUID, nil)
			}
			return produced, nil
		}
		if ctx.Err() != nil || errors.Is(err, durablews.ErrRoutingKey) {
			if o != nil {
				// The last attempt usually fails only because time ran out:
				// name the failure that made the earlier attempts retry.
				if prev, _ := o.get(msg.UUID); prev != nil && errors.Is(err, ctx.Err()) {
					err = fmt.Errorf("gave up retrying when the request timed out (%v); last failure: %w", ctx.Err(), prev)
				}
				o.set(msg.UUID, err)
			}
			return nil, nil
		}
		if o != nil {
			o.set(msg.UUID, err)
		}
		a.logger.Error("Forward to browsers failed; retrying", err, watermill.LogFields{"message_uuid": msg.UUID})
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil, err
	}
}

// routes builds the HTTP handler:
//
//	GET  /               the page (?customer=42)
//	GET  /static/...     its script and style (embedded)
//	GET  /web/...        the browser client and @stomp/stompjs from WebDir
//	GET  /api/config     what the page needs to connect
//	POST /api/login      the demo's pretend login: sets the customer cookie
//	POST /api/tab-session tabsession.Handler (not in Trusted mode)
//	POST /api/events     publish test events; returns their UUIDs once confirmed
//	POST /api/announcements publish an announcement to the broadcast stream
//	GET  /api/fallbacks  events no tab of a customer handled in time (?customer=42)
//	GET  /metrics        Prometheus metrics of the publisher and the delivery receipts
func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFiles, "static")
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		page, err := fs.ReadFile(static, "index.html")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(page)
	})
	mux.Handle("GET /static/", noCache(http.StripPrefix("/static/", http.FileServerFS(static))))
	mux.Handle("GET /web/", noCache(http.StripPrefix("/web/", webFiles(a.cfg.WebDir))))
	mux.HandleFunc("GET /api/config", a.handleConfig)
	if a.sessions != nil {
		// Cross-origin requests are refused: by tabsession.Handler itself, and here
		// for the login (no login CSRF).
		mux.Handle("POST /api/login", http.NewCrossOriginProtection().Handler(http.HandlerFunc(a.handleLogin)))
		mux.Handle(tabSessionPath, a.sessions)
	}
	mux.HandleFunc("POST /api/events", a.handleEvents)
	mux.HandleFunc("POST /api/announcements", a.handleAnnounce)
	mux.HandleFunc("GET /api/fallbacks", a.handleFallbacks)
	mux.Handle("GET /metrics", a.metrics.handler())
	return mux
}

// Handler serves the page, the browser client and the API.
func (a *app) Handler() http.Handler { return a.handler }

func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// webFiles serves only what a page needs from the web dir: its top-level .js
// modules and the @stomp/stompjs package. No directory listings.
func webFiles(dir string) http.Handler {
	files := http.FileServerFS(os.DirFS(dir))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		clean := path.Clean("/" + p)[1:]
		allowed := (!strings.Contains(clean, "/") && strings.HasSuffix(clean, ".js")) ||
			(strings.HasPrefix(clean, "node_modules/@stomp/stompjs/") && !strings.HasSuffix(p, "/"))
		if clean != p || !allowed {
			http.NotFound(w, r)
			return
		}
		if ext := path.Ext(clean); ext == ".js" || ext == ".mjs" {
			// Modules need a JavaScript MIME type whatever the system's mime.types says.
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		} else if t := mime.TypeByExtension(ext); t != "" {
			w.Header().Set("Content-Type", t)
		}
		files.ServeHTTP(w, r)
	})
}

// tabSessionPath is where the tab-session endpoint is mounted.
const tabSessionPath = "/api/tab-session"

// browserConfig is GET /api/config: everything the page needs to connect.
// With tab sessions it holds no broker credential (the page gets a
// per-tab token from SessionURL); only the Trusted mode fills in
// WebSTOMPURL, Login and Passcode.
type browserConfig struct {
	Mode           string   `json:"mode"` // "session" or "trusted"
	SessionURL     string   `json:"sessionUrl,omitempty"`
	WebSTOMPURL    string   `json:"webStompUrl,omitempty"`
	WebSTOMPURLs   []string `json:"webStompUrls,omitempty"` // instead of WebSTOMPURL, for several nodes
	Login          string   `json:"login,omitempty"`
	Passcode       string   `json:"passcode,omitempty"`
	Exchange       string   `json:"exchange"`
	Stream         string   `json:"stream"`
	QueueExpiresMs int      `json:"queueExpiresMs"`
	EventTypes     []string `json:"eventTypes"`
	// ReceiptsExchange is where a Trusted-mode page sends its delivery
	// receipts (with tab sessions the session names the destination).
	ReceiptsExchange string `json:"receiptsExchange,omitempty"`
	FallbackAfterMs  int64  `json:"fallbackAfterMs"`
}

func (a *app) handleConfig(w http.ResponseWriter, _ *http.Request) {
	c := browserConfig{
		Mode:           "session",
		SessionURL:     tabSessionPath,
		Exchange:       a.cfg.Exchange,
		Stream:         a.cfg.Stream,
		QueueExpiresMs: a.cfg.QueueExpiresMs,
		EventTypes:     demoEvents,
	}
	if a.cfg.Trusted {
		c = browserConfig{
			Mode:           "trusted",
			WebSTOMPURL:    a.cfg.WebSTOMPURL,
			Login:          a.cfg.BrowserLogin,
			Passcode:       a.cfg.BrowserPasscode,
			Exchange:       a.cfg.Exchange,
			Stream:         a.cfg.Stream,
			QueueExpiresMs: a.cfg.QueueExpiresMs,
			EventTypes:     demoEvents,

			ReceiptsExchange: receiptsExchange(a.cfg),
		}
	}
	c.FallbackAfterMs = a.cfg.FallbackAfter.Milliseconds()
	if urls := splitURLs(a.cfg.WebSTOMPURL); len(urls) > 1 {
		c.WebSTOMPURL, c.WebSTOMPURLs = "", urls
	}
	writeJSON(w, http.StatusOK, c)
}

// eventsRequest is the body of POST /api/events (JSON or form fields of the
// same names). Event empty means: cycle through the demo event types.
type eventsRequest struct {
	Customer string `json:"customer"`
	Count    int    `json:"count"`
	Event    string `json:"event"`
	// WaitMs > 0: after RabbitMQ confirmed, wait up to this long for a
	// delivery receipt of each event from a tab of the customer.
	WaitMs int `json:"wait_ms"`
	// WaitTabs: with WaitMs, wait for receipts of this many tabs (default
	// 1: the first tab of the customer that handled the event).
	WaitTabs int `json:"wait_tabs"`
}

type publishedEvent struct {
	ID         string `json:"id"`
	Event      string `json:"event"`
	RoutingKey string `json:"routing_key"`
	Order      int64  `json:"order"`
}

type eventsResponse struct {
	Customer string            `json:"customer"`
	IDs      []string          `json:"ids"`
	Events   []publishedEvent  `json:"events"`
	Millis   int64             `json:"ms"`
	Error    string            `json:"error,omitempty"`
	Failed   map[string]string `json:"failed,omitempty"`
	// Receipts (with wait_ms): per event, how many of the customer's tabs
	// handled it by the answer; Handled says it in words ("handled by 2
	// tabs in 41 ms").
	Receipts map[string]eventReceipts `json:"receipts,omitempty"`
	Handled  string                   `json:"handled,omitempty"`
}

// orderEvent is the payload browsers receive.
type orderEvent struct {
	Customer string    `json:"customer"`
	Event    string    `json:"event"`
	Order    int64     `json:"order"`
	Amount   string    `json:"amount"`
	Seq      int       `json:"seq"`
	At       time.Time `json:"at"`
}

func (a *app) handleEvents(w http.ResponseWriter, r *http.Request) {
	req, err := parseEventsRequest(w, r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), a.cfg.PublishTimeout)
	defer cancel()
	o := &outcomes{err: make(map[string]error, req.Count)}
	ctx = context.WithValue(ctx, outcomesKey{}, o)

	resp := eventsResponse{Customer: req.Customer, IDs: []string{}, Events: []publishedEvent{}}
	msgs := make([]*message.Message, 0, req.Count)
	for i := range req.Count {
		ev := req.Event
		if ev == "" {
			ev = demoEvents[i%len(demoEvents)]
		}
		order := a.orderNo.Add(1)
		payload, err := json.Marshal(orderEvent{
			Customer: req.Customer, Event: ev, Order: order, Seq: i + 1,
			Amount: fmt.Sprintf("%d.%02d", 10+order%90, order%100), At: time.Now().UTC(),
		})
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		msg := message.NewMessage(watermill.NewUUID(), payload)
		msg.Metadata.Set(metaCustomer, req.Customer)
		msg.Metadata.Set(metaEventType, ev)
		msg.SetContext(ctx)
		msgs = append(msgs, msg)
		rk, _ := routingKey(req.Customer, ev)
		resp.Events = append(resp.Events, publishedEvent{ID: msg.UUID, Event: ev, RoutingKey: rk, Order: order})
	}
	// Returns once the router acked every event, i.e. after RabbitMQ
	// confirmed each forward (or the request gave up on it, see settle).
	if err := a.source.Publish(ordersTopic, msgs...); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	resp.Millis = time.Since(start).Milliseconds()
	ukey := a.userKey(req.Customer)
	for _, ev := range resp.Events {
		if err, ok := o.get(ev.ID); ok && err == nil {
			a.receipts.expect(req.Customer, ukey, ev)
		}
	}
	for _, m := range msgs {
		err, ok := o.get(m.UUID)
		switch {
		case !ok:
			err = errors.New("not confirmed: the app is shutting down")
		case err == nil:
			resp.IDs = append(resp.IDs, m.UUID)
			continue
		}
		if resp.Failed == nil {
			resp.Failed = map[string]string{}
		}
		resp.Failed[m.UUID] = err.Error()
	}
	if len(resp.Failed) > 0 {
		resp.Error = fmt.Sprintf("%d of %d events not confirmed by RabbitMQ", len(resp.Failed), len(msgs))
		writeJSON(w, http.StatusServiceUnavailable, resp)
		return
	}
	if req.WaitMs > 0 {
		wait := min(time.Duration(req.WaitMs)*time.Millisecond, time.Until(deadlineOf(ctx)))
		resp.Receipts, resp.Handled = a.receipts.wait(ctx, start, ukey, resp.IDs, req.WaitTabs, wait)
	}
	writeJSON(w, http.StatusOK, resp)
}

func parseEventsRequest(w http.ResponseWriter, r *http.Request) (eventsRequest, error) {
	var req eventsRequest
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return req, fmt.Errorf("bad JSON body: %v", err)
		}
	} else {
		if err := r.ParseForm(); err != nil {
			return req, fmt.Errorf("bad form body: %v", err)
		}
		req.Customer = r.Form.Get("customer")
		req.Event = r.Form.Get("event")
		if c := r.Form.Get("count"); c != "" {
			n, err := strconv.Atoi(c)
			if err != nil {
				return req, fmt.Errorf("count %q is not a number", c)
			}
			req.Count = n
		}
	}
	if req.Count == 0 {
		req.Count = 1
	}
	switch {
	case !customerRE.MatchString(req.Customer):
		return req, fmt.Errorf("customer %q: want 1-32 of A-Z a-z 0-9 _ -", req.Customer)
	case req.Count < 1 || req.Count > maxEventsPerRequest:
		return req, fmt.Errorf("count %d: want 1..%d", req.Count, maxEventsPerRequest)
	case req.WaitMs < 0 || req.WaitMs > maxWaitMs:
		return req, fmt.Errorf("wait_ms %d: want 0 (do not wait for receipts) to %d", req.WaitMs, maxWaitMs)
	case req.WaitTabs < 0 || req.WaitTabs > 100:
		return req, fmt.Errorf("wait_tabs %d: want 0 or 1 (the first tab) to 100", req.WaitTabs)
	case req.Event != "" && !eventTypeRE.MatchString(req.Event):
		return req, fmt.Errorf("event %q: want a lower-case identifier like order_paid", req.Event)
	}
	return req, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Start listens on cfg.Addr and serves in the background. URL returns the
// base URL then.
func (a *app) Start() error {
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", a.cfg.Addr, err)
	}
	srv := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second}
	a.mu.Lock()
	a.srv = srv
	a.url = "http://" + ln.Addr().String()
	a.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("HTTP server stopped", err, nil)
		}
	}()
	return nil
}

// URL is the base URL after Start, like http://127.0.0.1:8080.
func (a *app) URL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.url
}

// Close stops the HTTP server (letting requests finish), the router, the
// in-process bus and the publisher. It is idempotent.
func (a *app) Close() error {
	a.closeOnce.Do(func() {
		var errs []error
		a.mu.Lock()
		srv := a.srv
		a.mu.Unlock()
		if srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), a.cfg.PublishTimeout+5*time.Second)
			if err := srv.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			}
			cancel()
		}
		if err := a.router.Close(); err != nil {
			errs = append(errs, fmt.Errorf("router: %w", err))
		}
		a.stopRun()
		<-a.runDone
		errs = append(errs, a.closeBackends())
		a.closeErr = errors.Join(errs...)
	})
	return a.closeErr
}

func (a *app) closeBackends() error {
	var errs []error
	if a.source != nil {
		if err := a.source.Close(); err != nil {
			errs = append(errs, fmt.Errorf("gochannel: %w", err))
		}
	}
	if a.sessions != nil {
		if err := a.sessions.Close(); err != nil {
			errs = append(errs, fmt.Errorf("tab sessions: %w", err))
		}
	}
	if err := a.pub.Close(); err != nil {
		errs = append(errs, err)
	}
	a.untrack()
	if err := a.receipts.Close(); err != nil {
		errs = append(errs, fmt.Errorf("receipts: %w", err))
	}
	return errors.Join(errs...)
}

// deadlineOf is ctx's deadline (every request context here has one).
func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
