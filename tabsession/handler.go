package tabsession

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	rabbithole "github.com/michaelklishin/rabbit-hole/v3"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
)

// Handler is the tab-session endpoint: an http.Handler that lets a
// logged-in browser tab read its own messages from RabbitMQ over
// Web-STOMP, without any broker credential that could reach other users'
// data. The package documentation describes the HTTP contract.
//
// For each request it authenticates the user (Config.Authenticate), asks
// which bindings the user may have (Config.Bindings), declares the tab's
// queue with the service's own AMQP user, binds it, and returns a
// short-lived token whose only permission is to read that queue.
//
// Prepare does the same for a page the server is rendering, so the page
// can embed the session and receive every event published after it.
//
// Requests share one AMQP connection, redialled when lost (to the next of
// Config.AMQPURLs that answers, on a cluster). A Handler is
// safe for concurrent use; call Close when done.
type Handler struct {
	cfg     Config
	vhost   string
	nameKey []byte
	logger  watermill.LoggerAdapter
	cop     *http.CrossOriginProtection
	// userQueues enforces MaxQueuesPerUser and the queue-creation rate.
	userQueues *userQueues

	mgmt          []*rabbithole.Client // one per node; nil without a management URL
	mgmtTransport *http.Transport

	mu        sync.Mutex
	conn      *amqp.Connection
	urlIdx    int // index in cfg.amqpURLs() of conn, or of the URL to try first
	mgmtIdx   int // index in mgmt of the last client that answered
	dialErr   error
	dialErrAt time.Time
	closed    bool
	// receiptsCheckedOn is the connection on which the receipts exchange
	// was last found to be a topic exchange (checkReceiptsExchange).
	receiptsCheckedOn *amqp.Connection
	inRequests        sync.WaitGroup
	// brokerOps counts queue operations that outlived their request
	// (ensureQueueWithin); Close ends them by closing the connection.
	brokerOps sync.WaitGroup
}

var _ http.Handler = (*Handler)(nil)

// redialInterval is how long a failed dial is reported to new requests
// without dialling again, so an outage does not queue requests behind
// connect timeouts.
const redialInterval = time.Second

// maxRequestBytes bounds a session request body.
const maxRequestBytes = 4 << 10

// NewHandler validates cfg and returns the handler. It does not connect:
// the first request dials the broker, so an application can start while
// the broker is down (requests get 503 meanwhile). A nil logger logs
// nothing.
func NewHandler(cfg Config, logger watermill.LoggerAdapter) (*Handler, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	uri, err := amqp.ParseURI(cfg.amqpURLs()[0])
	if err != nil {
		return nil, fmt.Errorf("tabsession: invalid config: AMQPURL: %w", err)
	}
	vhost := uri.Vhost
	if cfg.AMQP.Vhost != "" {
		vhost = cfg.AMQP.Vhost
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	h := &Handler{
		cfg:        cfg,
		vhost:      vhost,
		nameKey:    queueNameKey(cfg),
		logger:     logger.With(watermill.LogFields{"component": "tabsession.Handler"}),
		cop:        http.NewCrossOriginProtection(),
		userQueues: newUserQueues(cfg, time.Now),
	}
	for _, o := range cfg.TrustedOrigins {
		_ = h.cop.AddTrustedOrigin(o) // validated
	}
	if mu := cfg.managementURLs(); len(mu) > 0 {
		h.mgmtTransport = &http.Transport{Proxy: http.ProxyFromEnvironment, IdleConnTimeout: 30 * time.Second}
		for _, m := range mu {
			u, _ := url.Parse(m) // validated
			pass, _ := u.User.Password()
			user := u.User.Username()
			u.User = nil
			c, err := rabbithole.NewTLSClient(strings.TrimRight(u.String(), "/"), user, pass, h.mgmtTransport)
			if err != nil {
				return nil, fmt.Errorf("tabsession: management client: %w", err)
			}
			// Short enough that a dead node leaves time to ask the next.
			c.SetTimeout(10 * time.Second / time.Duration(len(mu)))
			h.mgmt = append(h.mgmt, c)
		}
	}
	return h, nil
}

// Close closes the AMQP connection and waits for requests in progress.
// Later requests get 503. Tabs already connected are not affected: their
// queues and tokens live on the broker.
func (h *Handler) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.mu.Unlock()
	h.inRequests.Wait()
	h.mu.Lock()
	conn := h.conn
	h.conn = nil
	h.mu.Unlock()
	var err error
	if conn != nil && !conn.IsClosed() {
		err = conn.Close()
	}
	h.brokerOps.Wait()
	if h.mgmtTransport != nil {
		h.mgmtTransport.CloseIdleConnections()
	}
	return err
}

// begin counts a request in progress (Close waits for it; call done) and
// authenticates it. After Close it refuses the request.
func (h *Handler) begin(r *http.Request) (user string, done func(), herr *httpError) {
	h.mu.Lock()
	closed := h.closed
	if !closed {
		h.inRequests.Add(1)
	}
	h.mu.Unlock()
	if closed {
		return "", nil, unavailable(ErrClosed)
	}
	counted := true
	defer func() {
		// Also when authenticate panics (it should not: callbacks are
		// guarded), so that Close never waits for a request that is gone.
		if counted {
			h.inRequests.Done()
		}
	}()
	if user, herr = h.authenticate(r); herr != nil {
		return "", nil, herr
	}
	counted = false // the caller's done() ends it
	return user, h.inRequests.Done, nil
}

// connection returns the shared AMQP connection, dialling if needed.
func (h *Handler) connection() (*amqp.Connection, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if h.conn != nil && !h.conn.IsClosed() {
		return h.conn, nil
	}
	if h.dialErr != nil && time.Since(h.dialErrAt) < redialInterval {
		return nil, h.dialErr
	}
	urls := h.cfg.amqpURLs()
	start := h.urlIdx
	if h.conn != nil {
		// The connection was lost: its node may be down, try the next one
		// first (the list wraps around to it last).
		start++
	}
	conn, i, err := amqpconn.DialAny(urls, start, h.cfg.AMQP, "durablews-tabsession")
	if err != nil {
		h.dialErr = err
		h.dialErrAt = time.Now()
		h.logger.Error("Tab sessions: cannot connect to any broker node", err, nil)
		return nil, h.dialErr
	}
	if h.conn != nil && len(urls) > 1 {
		h.logger.Info("Tab sessions: reconnected to the broker", watermill.LogFields{"url": amqpconn.RedactURL(urls[i])})
	}
	h.conn, h.urlIdx, h.dialErr = conn, i, nil
	return conn, nil
}

// request is the JSON body of a session request.
type request struct {
	TabID    string     `json:"tab_id"`
	Bindings *[]Binding `json:"bindings"` // nil: all allowed
	// Tabs are the ids of the user's other tabs whose queues a shared-mode
	// leader reads on its one connection (see the package documentation).
	Tabs []string `json:"tabs"`
}

// maxTabsNoCap bounds a request's tabs when MaxQueuesPerUser is negative (no cap).
const maxTabsNoCap = 64

// errorBody is the JSON body of every error response.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

// ServeHTTP implements the contract in the package documentation.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sess, herr := h.serve(w, r)
	if herr != nil {
		h.writeError(w, r, herr)
		return
	}
	setJSONHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(sess)
}

func setJSONHeaders(hd http.Header) {
	hd.Set("Content-Type", "application/json")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) (*Session, *httpError) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, &httpError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", message: "use POST with a JSON body", kind: errBadRequest}
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, &httpError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
			message: "set Content-Type: application/json", kind: errBadRequest}
	}
	if err := h.cop.Check(r); err != nil {
		return nil, forbidden(err, "cross-origin request refused: call this endpoint from the application's own origin")
	}
	user, done, herr := h.begin(r)
	if herr != nil {
		return nil, herr
	}
	defer done()

	var req request
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, badRequest("body over %d bytes", maxRequestBytes)
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
	tabs, herr := h.cleanTabs(req.Tabs, tabID)
	if herr != nil {
		return nil, herr
	}
	return h.open(r, user, tabID, req.Bindings, tabs)
}

// cleanTabs checks a request's tabs (each a tab id, at most
// MaxQueuesPerUser, or maxTabsNoCap without a cap: a user cannot hold more
// queues than that anyway) and drops repeats and the requesting tab's own id.
func (h *Handler) cleanTabs(in []string, self string) ([]string, *httpError) {
	limit := h.cfg.MaxQueuesPerUser
	if limit < 0 {
		limit = maxTabsNoCap
	}
	if len(in) > limit {
		return nil, badRequest("tabs: %d tab ids, at most %d (MaxQueuesPerUser)", len(in), limit)
	}
	seen := map[string]bool{self: true}
	var out []string
	for _, id := range in {
		if !tabIDPattern.MatchString(id) {
			return nil, badRequest("tabs: %q is not a tab id (8 to 64 characters of a-z and 0-9)", id)
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, nil
}

// authenticate runs Config.Authenticate and maps its outcome to 401/403
// (500 when it panics).
func (h *Handler) authenticate(r *http.Request) (string, *httpError) {
	user, err := callGuarded("Authenticate", func() (string, error) { return h.cfg.Authenticate(r) })
	var cp *callbackPanic
	switch {
	case errors.As(err, &cp):
		return "", internalError(cp)
	case errors.Is(err, ErrForbidden):
		return "", forbidden(err, "this user may not open tab sessions")
	case err != nil:
		return "", unauthenticated(err)
	case user == "":
		return "", unauthenticated(errors.New("Authenticate returned an empty user and no error"))
	}
	return user, nil
}

func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, e *httpError) {
	fields := watermill.LogFields{"status": e.status, "path": r.URL.Path}
	if e.cause != nil {
		fields["cause"] = e.cause.Error()
	}
	switch {
	case e.status >= 500:
		h.logger.Error("Tab session request failed", errors.New(e.message), fields)
	default:
		h.logger.Debug("Tab session request refused: "+e.message, fields)
	}
	setJSONHeaders(w.Header())
	switch {
	case e.retryAfter > 0:
		w.Header().Set("Retry-After", strconv.Itoa(int((e.retryAfter+time.Second-1)/time.Second)))
	case e.status == http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "2")
	}
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(errorBody{Error: e.code, Message: e.message})
}
