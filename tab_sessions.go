package durablews

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill"
	rabbithole "github.com/michaelklishin/rabbit-hole/v3"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
)

// Defaults of TabSessionsConfig.
const (
	DefaultResourceServerID = "rabbitmq"
	DefaultTokenTTL         = 10 * time.Minute
	DefaultTabQueueExpires  = time.Hour
	DefaultTabQueueMaxLen   = 10000
)

// Errors an Authenticate or Bindings callback returns (wrapped or not) to
// choose the HTTP status of a refused session request.
var (
	// ErrTabUnauthenticated: no valid application session; 401.
	ErrTabUnauthenticated = errors.New("durablews: not authenticated")
	// ErrTabForbidden: authenticated but not allowed to open a tab
	// session; 403.
	ErrTabForbidden = errors.New("durablews: not allowed")
	// ErrTabSessionsClosed is returned after TabSessions.Close (HTTP 503).
	ErrTabSessionsClosed = errors.New("durablews: tab sessions closed")
)

// Binding is one binding of a tab's queue: messages published to Exchange
// with a routing key matching Key (topic pattern for topic exchanges, exact
// key for direct ones, ignored by fanout) reach the tab.
type Binding struct {
	Exchange string `json:"exchange"`
	Key      string `json:"key"`
}

// TabSessionsConfig configures TabSessions. Zero fields get the defaults
// named on them.
type TabSessionsConfig struct {
	// AMQPURL of the service's own broker user, e.g.
	// amqp://svc:secret@127.0.0.1:5672/. This user declares and binds the
	// tab queues, so it needs configure and write on ^tab- queues and read
	// on the exchanges tabs are bound to. It authenticates against the
	// broker's internal backend (auth_backends.1), not with a token. The
	// vhost of the URL (or AMQP.Vhost) is the vhost tokens are scoped to.
	AMQPURL string
	// AMQP is passed to amqp091-go's DialConfig (TLS, vhost, heartbeat).
	// Dial defaults to a 5 s connect timeout.
	AMQP amqp.Config

	// ManagementURL, optional, is the management API with credentials,
	// e.g. http://svc:secret@127.0.0.1:15672. When set, every session
	// request also removes bindings of the tab's queue that the user is no
	// longer allowed (a revoked binding disappears at the next renewal).
	// Without it bindings are only ever added: a binding the application
	// revokes keeps routing into an already existing tab queue until that
	// queue expires (QueueExpires after its last consumer left), even
	// though the tab keeps renewing. The user needs the "management" tag.
	// When the management API cannot be asked, session requests fail with
	// 503 (fail closed) rather than hand out a token for a queue that may
	// still carry a revoked binding.
	ManagementURL string

	// WebSTOMPURL is the Web-STOMP endpoint handed to the browser, e.g.
	// wss://example.com/ws (behind a TLS proxy; see the README's threat
	// model). Required.
	WebSTOMPURL string

	// Authenticate identifies the application's user behind a request,
	// typically from the application's own session cookie. It returns a
	// stable, non-empty user id. Return an error wrapping ErrTabForbidden
	// for HTTP 403; any other error (ErrTabUnauthenticated, or none with
	// an empty user) is HTTP 401. Required.
	Authenticate func(r *http.Request) (user string, err error)

	// Bindings returns every binding the user may have. A session gets all
	// of them, or the subset the request lists. An error wrapping
	// ErrTabForbidden, or an empty list, is HTTP 403; another error is
	// HTTP 500 (logged, not shown to the client). Required.
	Bindings func(ctx context.Context, user string) ([]Binding, error)

	// SigningKey is the HS256 key shared with the broker's
	// rabbitmq_auth_backend_oauth2 (at least MinSigningKeyBytes; see
	// LoadSigningKey). Required.
	SigningKey []byte
	// KeyID goes into the token header as kid: the key's name in the
	// broker's signing_keys. Empty means no kid, and the broker verifies
	// with its default_key.
	KeyID string
	// ResourceServerID is the broker's auth_oauth2.resource_server_id:
	// the token's aud and the prefix of its scope. Default "rabbitmq".
	ResourceServerID string
	// TokenTTL is how long a token can open a connection. Default 10 min.
	// A connection opened before expiry keeps consuming after it.
	TokenTTL time.Duration

	// QueueExpires is the tab queue's x-expires: the broker deletes the
	// queue (and its messages) after it had no consumer this long.
	// Default 1 h. Keep it stable: a changed value only applies to new
	// queues (existing ones keep theirs; see ServeHTTP).
	QueueExpires time.Duration
	// QueueMaxLength is the tab queue's x-max-length (ready messages);
	// beyond it the oldest are dropped (x-overflow drop-head). Default
	// 10000. Same stability note as QueueExpires.
	QueueMaxLength int

	// TrustedOrigins are extra origins (scheme://host[:port]) whose pages
	// may call the endpoint cross-origin; see net/http.CrossOriginProtection.
	// By default only same-origin browser requests are accepted.
	TrustedOrigins []string
}

func (c *TabSessionsConfig) setDefaults() {
	if c.ResourceServerID == "" {
		c.ResourceServerID = DefaultResourceServerID
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.QueueExpires == 0 {
		c.QueueExpires = DefaultTabQueueExpires
	}
	if c.QueueMaxLength == 0 {
		c.QueueMaxLength = DefaultTabQueueMaxLen
	}
	if c.AMQP.Dial == nil {
		c.AMQP.Dial = amqp.DefaultDial(5 * time.Second)
	}
}

// Validate reports every invalid field at once.
func (c TabSessionsConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("durablews: invalid tab sessions config: "+format, args...))
	}
	if err := amqpconn.ValidateURL(c.AMQPURL); err != nil {
		bad("AMQPURL %q: %v", amqpconn.RedactURL(c.AMQPURL), err)
	}
	if c.AMQP.Recovery != nil {
		bad("AMQP.Recovery is set: TabSessions redials itself; remove it")
	}
	if c.ManagementURL != "" {
		if u, err := url.Parse(c.ManagementURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("ManagementURL %q: want http(s)://user:pass@host:port", amqpconn.RedactURL(c.ManagementURL))
		}
	}
	if u, err := url.Parse(c.WebSTOMPURL); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		bad("WebSTOMPURL %q: want ws://host:port/ws or wss://host/ws", c.WebSTOMPURL)
	}
	if c.Authenticate == nil {
		bad("Authenticate is nil: give a func that returns the application's user for a request")
	}
	if c.Bindings == nil {
		bad("Bindings is nil: give a func that returns the exchange/key bindings a user may have")
	}
	if len(c.SigningKey) < MinSigningKeyBytes {
		bad("SigningKey is %d bytes; need at least %d (the broker's HS256 key; see LoadSigningKey)", len(c.SigningKey), MinSigningKeyBytes)
	}
	if strings.ContainsAny(c.KeyID, " \t\r\n\"") {
		bad("KeyID %q contains white space or quotes", c.KeyID)
	}
	if c.ResourceServerID == "" || strings.ContainsAny(c.ResourceServerID, " \t\r\n/:*%") {
		bad("ResourceServerID %q must be non-empty, without white space or any of / : * %%", c.ResourceServerID)
	}
	if c.TokenTTL < time.Second {
		bad("TokenTTL %v must be at least 1s (exp has whole seconds)", c.TokenTTL)
	}
	if c.QueueExpires < time.Second {
		bad("QueueExpires %v must be at least 1s", c.QueueExpires)
	}
	if c.QueueMaxLength <= 0 {
		bad("QueueMaxLength %d must be positive", c.QueueMaxLength)
	}
	for _, o := range c.TrustedOrigins {
		if err := http.NewCrossOriginProtection().AddTrustedOrigin(o); err != nil {
			bad("TrustedOrigins %q: %v", o, err)
		}
	}
	return errors.Join(errs...)
}

// TabSession is the JSON body of a successful session response; see
// TabSessions for the contract.
type TabSession struct {
	TabID       string    `json:"tab_id"`
	URL         string    `json:"url"`
	Vhost       string    `json:"vhost"`
	Queue       string    `json:"queue"`
	Destination string    `json:"destination"`
	Token       string    `json:"token"`
	ExpiresAt   time.Time `json:"expires_at"`
	ExpiresIn   int       `json:"expires_in"`
	RenewIn     int       `json:"renew_in"`
	Bindings    []Binding `json:"bindings"`
	// QueueCreated is true when this request had to create the tab's
	// queue. On a tab's first session that is normal; on a later one the
	// queue was gone: it expired (the tab was away longer than
	// QueueExpires), an operator deleted it, or the broker lost it in a
	// crash right after declaring it. Messages published while it was
	// missing are lost, so the page should reload its state.
	QueueCreated bool `json:"queue_created"`
}

// tabSessionRequest is the JSON body of a session request.
type tabSessionRequest struct {
	TabID    string     `json:"tab_id"`
	Bindings *[]Binding `json:"bindings"` // nil: all allowed
}

// tabErrorBody is the JSON body of every error response.
type tabErrorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// TabSessions is an http.Handler that opens tab sessions: it lets a
// logged-in browser tab read its own messages from RabbitMQ over Web-STOMP
// without any broker credential that could reach other users' data.
//
// For each request it authenticates the application's user
// (TabSessionsConfig.Authenticate), asks which bindings the user may have
// (TabSessionsConfig.Bindings), declares the tab's queue with the service's
// own AMQP user — durable, x-expires, x-single-active-consumer, bounded by
// x-max-length with drop-head — binds it, and returns a short-lived JWT
// whose only scope is read on that queue. RabbitMQ's OAuth 2 backend
// verifies the token (scripts/rabbitmq-tab-sessions.sh configures a
// broker). A tab holding it can consume and ack its queue, and nothing else:
// no declare, no bind, no SEND, no other queue.
//
// # HTTP contract
//
// Mount it at a path of the application's origin, e.g.
// mux.Handle("/durablews/session", sessions). One method:
//
//	POST <path>
//	Content-Type: application/json
//	Cookie: <the application's session>      (whatever Authenticate reads)
//
//	{"tab_id": "k3xq7r2m4a6b8c2d4f6g8h2j4k", "bindings": [{"exchange": "events", "key": "customer.42.#"}]}
//
// Both fields are optional. tab_id is 8 to 64 characters of [a-z0-9] (the
// web client's generateTabId makes 26); absent or "", the server makes one
// and returns it. Keep it for the life of the tab (sessionStorage) and send
// it on every renewal: the queue is derived from the authenticated user and
// the tab id, so the same tab id gets the same queue back with the messages
// that arrived meanwhile, and no request can name another user's queue.
// bindings, if present, must be a non-empty subset of what the application
// allows (exact exchange and key); absent or null means all of them.
// Unknown fields, trailing data and bodies over 4 KiB are refused.
//
// Success is 200 with Cache-Control: no-store and
//
//	{
//	  "tab_id":      "k3xq7r2m4a6b8c2d4f6g8h2j4k",
//	  "url":         "wss://example.com/ws",          // WebSTOMPURL
//	  "vhost":       "/",                             // STOMP CONNECT host header
//	  "queue":       "tab-9f86d081884c7d65-k3xq7r2m4a6b8c2d4f6g8h2j4k",
//	  "destination": "/amq/queue/tab-9f86d081884c7d65-k3xq7r2m4a6b8c2d4f6g8h2j4k",
//	  "token":       "<JWT>",                         // STOMP CONNECT passcode
//	  "expires_at":  "2026-11-25T21:40:00Z",          // token expiry (RFC 3339)
//	  "expires_in":  600,                             // seconds from now
//	  "renew_in":    450,                             // renew after this many seconds
//	  "bindings":    [{"exchange": "events", "key": "customer.42.#"}],
//	  "queue_created": false                          // true: the queue did not exist
//	}
//
// The browser then connects to url with subprotocol v12.stomp and sends
// CONNECT with host:<vhost>, passcode:<token> and any login (the broker
// ignores it and names the connection after the token's sub, the queue
// name), and SUBSCRIBE with destination:<destination>, ack:client-individual,
// a prefetch-count and an explicit id. Do not SUBSCRIBE to /exchange/... or
// /queue/...: those declare queues and are refused. The queue is declared
// with x-single-active-consumer, so a reconnect while the old socket is
// still half-open waits for it instead of reordering messages.
//
// Renewal: the broker checks the token when a connection is opened
// (CONNECT) and on each SUBSCRIBE; a subscription made before expires_at
// keeps consuming after it. To always have a valid token for the next
// reconnect, POST again with the same tab_id after renew_in seconds (and at
// once whenever a CONNECT fails with "Bad CONNECT", which is also what an
// expired token gets), and use the newest token for every new connection;
// subscribe right after CONNECT rather than later on an old connection.
// Renewal keeps the queue and re-applies the bindings the user is allowed
// now. queue_created:true on a renewal means the queue was gone and has
// been created again, empty (see TabSession.QueueCreated): the page has
// missed messages and should reload its state. Never use one tab_id in two
// live tabs (a duplicated browser tab copies sessionStorage): with a single
// active consumer the second tab would receive nothing until the first one
// leaves.
//
// Errors have a JSON body {"error": "<code>", "message": "<what to fix>"}:
//
//	400 bad_request             malformed JSON, unknown field, bad tab_id, empty bindings list
//	401 unauthenticated         Authenticate refused the request (log in again)
//	403 forbidden               Authenticate or Bindings refused the user; a requested
//	                            binding is not allowed; or a cross-origin browser request
//	405 method_not_allowed      not POST (Allow: POST)
//	415 unsupported_media_type  Content-Type is not application/json
//	500 internal                a callback or the broker configuration failed (logged)
//	503 unavailable             the broker cannot be reached; retry after Retry-After seconds
//
// CSRF: only POST with Content-Type: application/json is served, which a
// cross-site form cannot send without a CORS preflight that this handler
// does not answer; in addition, cross-origin browser requests are refused
// (net/http.CrossOriginProtection: Sec-Fetch-Site, else Origin vs Host)
// unless listed in TrustedOrigins. Do not add permissive CORS headers.
//
// Each request opens an AMQP channel on one shared connection, which is
// redialled when lost. An existing tab queue is only checked (passive
// declare), never declared again, so a queue whose arguments differ from
// the current config (QueueExpires or QueueMaxLength changed since it was
// declared) is kept as it is rather than failing the renewal.
type TabSessions struct {
	cfg       TabSessionsConfig
	vhost     string
	logger    watermill.LoggerAdapter
	cop       *http.CrossOriginProtection
	queueArgs amqp.Table

	mgmt          *rabbithole.Client
	mgmtTransport *http.Transport

	mu         sync.Mutex
	conn       *amqp.Connection
	dialErr    error
	dialErrAt  time.Time
	closed     bool
	inRequests sync.WaitGroup
}

var _ http.Handler = (*TabSessions)(nil)

// redialInterval is how long a failed dial is reported to new requests
// without dialling again, so an outage does not queue requests behind
// connect timeouts.
const redialInterval = time.Second

// maxSessionRequestBytes bounds a session request body.
const maxSessionRequestBytes = 4 << 10

// NewTabSessions validates cfg and returns the handler. It does not
// connect: the first request dials the broker (so an application can start
// while the broker is down; requests get 503 meanwhile). A nil logger logs
// nothing. Call Close when done.
func NewTabSessions(cfg TabSessionsConfig, logger watermill.LoggerAdapter) (*TabSessions, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	uri, err := amqp.ParseURI(cfg.AMQPURL)
	if err != nil {
		return nil, fmt.Errorf("durablews: invalid tab sessions config: AMQPURL: %w", err)
	}
	vhost := uri.Vhost
	if cfg.AMQP.Vhost != "" {
		vhost = cfg.AMQP.Vhost
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	s := &TabSessions{
		cfg:    cfg,
		vhost:  vhost,
		logger: logger.With(watermill.LogFields{"component": "durablews.TabSessions"}),
		cop:    http.NewCrossOriginProtection(),
		queueArgs: amqp.Table{
			"x-expires":                int64(cfg.QueueExpires / time.Millisecond),
			"x-max-length":             int64(cfg.QueueMaxLength),
			"x-overflow":               "drop-head",
			"x-single-active-consumer": true,
		},
	}
	for _, o := range cfg.TrustedOrigins {
		_ = s.cop.AddTrustedOrigin(o) // validated
	}
	if cfg.ManagementURL != "" {
		u, _ := url.Parse(cfg.ManagementURL) // validated
		pass, _ := u.User.Password()
		user := u.User.Username()
		u.User = nil
		s.mgmtTransport = &http.Transport{Proxy: http.ProxyFromEnvironment, IdleConnTimeout: 30 * time.Second}
		s.mgmt, err = rabbithole.NewTLSClient(strings.TrimRight(u.String(), "/"), user, pass, s.mgmtTransport)
		if err != nil {
			return nil, fmt.Errorf("durablews: management client: %w", err)
		}
		s.mgmt.SetTimeout(10 * time.Second)
	}
	return s, nil
}

// Close closes the AMQP connection and waits for requests in progress.
// Later requests get 503. Tabs already connected are not affected: their
// queues and tokens live on the broker.
func (s *TabSessions) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.inRequests.Wait()
	s.mu.Lock()
	conn := s.conn
	s.conn = nil
	s.mu.Unlock()
	var err error
	if conn != nil && !conn.IsClosed() {
		err = conn.Close()
	}
	if s.mgmtTransport != nil {
		s.mgmtTransport.CloseIdleConnections()
	}
	return err
}

// tabIDPattern is the web client's tab id format (web/internal.js).
var tabIDPattern = regexp.MustCompile(`^[a-z0-9]{8,64}$`)

var tabIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newTabID makes a tab id like the web client's generateTabId: 16 random
// bytes as 26 lowercase base32 characters.
func newTabID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (Go >= 1.24)
	return strings.ToLower(tabIDEncoding.EncodeToString(b))
}

// tabQueueName is tab-<first 16 hex of sha256(user)>-<tabID>. The user part
// comes from the authenticated user, never from the client, so a client
// can only ever name queues of its own user.
func tabQueueName(user, tabID string) string {
	h := sha256.Sum256([]byte(user))
	return "tab-" + hex.EncodeToString(h[:8]) + "-" + tabID
}

// httpError is a refusal with its status and client-facing message.
type httpError struct {
	status  int
	code    string
	message string
	cause   error // logged, never sent
}

func (e *httpError) Error() string { return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message) }

func badRequest(format string, args ...any) *httpError {
	return &httpError{status: http.StatusBadRequest, code: "bad_request", message: fmt.Sprintf(format, args...)}
}

func forbidden(cause error, format string, args ...any) *httpError {
	return &httpError{status: http.StatusForbidden, code: "forbidden", message: fmt.Sprintf(format, args...), cause: cause}
}

func internalError(cause error) *httpError {
	return &httpError{status: http.StatusInternalServerError, code: "internal", message: "internal error; the server logged the cause", cause: cause}
}

func unavailable(cause error) *httpError {
	return &httpError{status: http.StatusServiceUnavailable, code: "unavailable", message: "the message broker is unavailable; retry later", cause: cause}
}

// ServeHTTP implements the contract documented on TabSessions.
func (s *TabSessions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sess, herr := s.serve(w, r)
	if herr != nil {
		s.writeError(w, r, herr)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(sess)
}

func (s *TabSessions) serve(w http.ResponseWriter, r *http.Request) (*TabSession, *httpError) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, &httpError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", message: "use POST with a JSON body"}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, &httpError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
			message: "set Content-Type: application/json"}
	}
	if err := s.cop.Check(r); err != nil {
		return nil, forbidden(err, "cross-origin request refused: call this endpoint from the application's own origin")
	}

	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.inRequests.Add(1)
	}
	s.mu.Unlock()
	if closed {
		return nil, unavailable(ErrTabSessionsClosed)
	}
	defer s.inRequests.Done()

	user, err := s.cfg.Authenticate(r)
	switch {
	case errors.Is(err, ErrTabForbidden):
		return nil, forbidden(err, "this user may not open tab sessions")
	case err != nil:
		return nil, &httpError{status: http.StatusUnauthorized, code: "unauthenticated", message: "not logged in: log in and retry", cause: err}
	case user == "":
		return nil, &httpError{status: http.StatusUnauthorized, code: "unauthenticated", message: "not logged in: log in and retry",
			cause: errors.New("Authenticate returned an empty user and no error")}
	}

	var req tabSessionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSessionRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, badRequest("body over %d bytes", maxSessionRequestBytes)
		}
		return nil, badRequest("body must be a JSON object {\"tab_id\": \"...\", \"bindings\": [...]}: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest("body must hold exactly one JSON object, with nothing after it")
	}

	tabID := req.TabID
	if tabID == "" {
		tabID = newTabID()
	} else if !tabIDPattern.MatchString(tabID) {
		return nil, badRequest("tab_id must be 8 to 64 characters of a-z and 0-9 (web client: generateTabId), or absent to get a new one")
	}

	allowed, err := s.cfg.Bindings(r.Context(), user)
	switch {
	case errors.Is(err, ErrTabForbidden):
		return nil, forbidden(err, "this user may not receive any messages")
	case err != nil:
		return nil, internalError(fmt.Errorf("Bindings callback: %w", err))
	case len(allowed) == 0:
		return nil, forbidden(nil, "this user may not receive any messages")
	}
	allowed, err = cleanBindings(allowed)
	if err != nil {
		return nil, internalError(fmt.Errorf("Bindings callback returned %w", err))
	}
	granted, herr := selectBindings(allowed, req.Bindings)
	if herr != nil {
		return nil, herr
	}

	queue := tabQueueName(user, tabID)
	created, err := s.ensureQueue(queue, granted)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			return nil, he
		}
		return nil, internalError(err)
	}

	now := time.Now()
	token, exp, err := mintTabToken(s.cfg.SigningKey, s.cfg.KeyID, s.cfg.ResourceServerID, s.vhost, queue, now, s.cfg.TokenTTL)
	if err != nil {
		return nil, internalError(err)
	}
	expiresIn := int(exp.Sub(now) / time.Second)
	renewIn := max(expiresIn*3/4, 1)
	s.logger.Debug("Tab session granted", watermill.LogFields{"queue": queue, "bindings": len(granted), "expires_at": exp})
	return &TabSession{
		TabID:        tabID,
		URL:          s.cfg.WebSTOMPURL,
		Vhost:        s.vhost,
		Queue:        queue,
		Destination:  "/amq/queue/" + queue,
		Token:        token,
		ExpiresAt:    exp.UTC(),
		ExpiresIn:    expiresIn,
		RenewIn:      renewIn,
		Bindings:     granted,
		QueueCreated: created,
	}, nil
}

func (s *TabSessions) writeError(w http.ResponseWriter, r *http.Request, e *httpError) {
	fields := watermill.LogFields{"status": e.status, "path": r.URL.Path}
	if e.cause != nil {
		fields["cause"] = e.cause.Error()
	}
	switch {
	case e.status >= 500:
		s.logger.Error("Tab session request failed", errors.New(e.message), fields)
	default:
		s.logger.Debug("Tab session request refused: "+e.message, fields)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if e.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "2")
	}
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(tabErrorBody{Error: e.code, Message: e.message})
}

// cleanBindings validates the application's bindings and drops duplicates.
func cleanBindings(in []Binding) ([]Binding, error) {
	out := make([]Binding, 0, len(in))
	seen := make(map[Binding]bool, len(in))
	for _, b := range in {
		switch {
		case b.Exchange == "":
			return nil, fmt.Errorf("a binding with an empty exchange (the default exchange cannot be bound)")
		case len(b.Exchange) > amqpconn.MaxShortString || len(b.Key) > amqpconn.MaxShortString:
			return nil, fmt.Errorf("binding %+v: exchange and key are limited to %d bytes", b, amqpconn.MaxShortString)
		case !utf8.ValidString(b.Exchange) || !utf8.ValidString(b.Key):
			return nil, fmt.Errorf("binding %+v is not valid UTF-8", b)
		}
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	return out, nil
}

// selectBindings returns the requested subset of allowed (all of allowed
// when nothing was requested).
func selectBindings(allowed []Binding, requested *[]Binding) ([]Binding, *httpError) {
	if requested == nil {
		return allowed, nil
	}
	if len(*requested) == 0 {
		return nil, badRequest("bindings is an empty list: omit it to get every binding you are allowed, or list some")
	}
	ok := make(map[Binding]bool, len(allowed))
	for _, b := range allowed {
		ok[b] = true
	}
	var out, refused []Binding
	seen := make(map[Binding]bool)
	for _, b := range *requested {
		if !ok[b] {
			refused = append(refused, b)
			continue
		}
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	if len(refused) > 0 {
		parts := make([]string, len(refused))
		for i, b := range refused {
			parts[i] = fmt.Sprintf("%q %q", b.Exchange, b.Key)
		}
		return nil, forbidden(nil, "binding not allowed for this user: %s (omit bindings to get the allowed ones)", strings.Join(parts, ", "))
	}
	return out, nil
}

// connection returns the shared AMQP connection, dialling if needed.
func (s *TabSessions) connection() (*amqp.Connection, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrTabSessionsClosed
	}
	if s.conn != nil && !s.conn.IsClosed() {
		return s.conn, nil
	}
	if s.dialErr != nil && time.Since(s.dialErrAt) < redialInterval {
		return nil, s.dialErr
	}
	conn, err := amqpconn.Dial(s.cfg.AMQPURL, s.cfg.AMQP, "durablews.TabSessions")
	if err != nil {
		s.dialErr = err
		s.dialErrAt = time.Now()
		s.logger.Error("Tab sessions: cannot connect to the broker", err, watermill.LogFields{"url": amqpconn.RedactURL(s.cfg.AMQPURL)})
		return nil, s.dialErr
	}
	s.conn, s.dialErr = conn, nil
	return conn, nil
}

// ensureQueue declares the tab queue (or keeps an existing one), binds it
// to every granted binding and, with a management client, removes bindings
// that are no longer granted. created reports that the queue did not exist.
func (s *TabSessions) ensureQueue(queue string, granted []Binding) (created bool, err error) {
	conn, err := s.connection()
	if err != nil {
		return false, unavailable(err)
	}
	ch, err := conn.Channel()
	if err != nil && conn.IsClosed() {
		// The connection died since the last request (broker restart,
		// closed by an operator): redial once.
		if conn, err = s.connection(); err != nil {
			return false, unavailable(err)
		}
		ch, err = conn.Channel()
	}
	// brokerErr classifies a failed AMQP operation: a dead connection is
	// 503, a refused operation (404 exchange, 403 permission) is 500.
	brokerErr := func(op string, err error) error {
		err = fmt.Errorf("%s: %w", op, err)
		if conn.IsClosed() || errors.Is(err, amqp.ErrClosed) {
			return unavailable(err)
		}
		return internalError(err)
	}
	if err != nil {
		return false, brokerErr("open channel", err)
	}
	defer func() { _ = ch.Close() }()
	// reopen replaces ch after the broker closed it with a channel
	// exception; on failure ch stays as it was, so the deferred Close never
	// sees a nil channel.
	reopen := func() error {
		c, err := conn.Channel()
		if err != nil {
			return brokerErr("open channel", err)
		}
		ch = c
		return nil
	}

	// A passive declare first tells whether the queue exists; a 404 closes
	// the channel, so the declare that creates it needs a new one.
	var ae *amqp.Error
	if _, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil); err == nil {
		return false, s.bindAll(ch, queue, granted, brokerErr)
	} else if !errors.As(err, &ae) || ae.Code != amqp.NotFound {
		return false, brokerErr("check queue "+queue, err)
	}
	if err := reopen(); err != nil {
		return false, err
	}
	_, err = ch.QueueDeclare(queue, true, false, false, false, s.queueArgs)
	created = err == nil
	if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
		// The queue exists with other arguments (QueueExpires or
		// QueueMaxLength changed since, and a concurrent request created
		// it between the passive check and this declare). Keep it:
		// failing would cut the tab off its messages. The channel is
		// closed; use a new one.
		s.logger.Info("Tab queue exists with other arguments; keeping it as is until it expires", watermill.LogFields{"queue": queue, "broker": ae.Reason})
		if err := reopen(); err != nil {
			return false, err
		}
		_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	}
	if err != nil {
		return false, brokerErr("declare queue "+queue, err)
	}
	return created, s.bindAll(ch, queue, granted, brokerErr)
}

// bindAll binds queue to every granted binding and, with a management
// client, removes the bindings that are no longer granted.
func (s *TabSessions) bindAll(ch *amqp.Channel, queue string, granted []Binding, brokerErr func(string, error) error) error {
	for _, b := range granted {
		if err := ch.QueueBind(queue, b.Key, b.Exchange, false, nil); err != nil {
			return brokerErr(fmt.Sprintf("bind queue %s to exchange %q with key %q", queue, b.Exchange, b.Key), err)
		}
	}
	if s.mgmt == nil {
		return nil
	}
	return s.removeStaleBindings(queue, granted)
}

// removeStaleBindings deletes every binding of queue (except the default
// exchange's) that is not granted. It fails closed: if the management API
// cannot be asked, the request fails with 503 rather than hand out a token
// for a queue that may still be bound to a revoked key.
func (s *TabSessions) removeStaleBindings(queue string, granted []Binding) error {
	keep := make(map[Binding]bool, len(granted))
	for _, b := range granted {
		keep[b] = true
	}
	infos, err := s.mgmt.ListQueueBindings(s.vhost, queue)
	if err != nil {
		return unavailable(fmt.Errorf("management API: list bindings of %s: %w", queue, err))
	}
	for _, bi := range infos {
		if bi.Source == "" || bi.DestinationType != "queue" || bi.Destination != queue {
			continue
		}
		if len(bi.Arguments) == 0 && keep[Binding{Exchange: bi.Source, Key: bi.RoutingKey}] {
			continue
		}
		resp, err := s.mgmt.DeleteBinding(s.vhost, bi)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			return unavailable(fmt.Errorf("management API: delete binding %s -> %s (%q): %w", bi.Source, queue, bi.RoutingKey, err))
		}
		s.logger.Info("Removed a tab queue binding the user is no longer allowed", watermill.LogFields{"queue": queue, "exchange": bi.Source, "key": bi.RoutingKey})
	}
	return nil
}
