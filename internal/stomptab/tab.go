// Package stomptab is a Go stand-in for a browser tab that receives
// durablews messages over RabbitMQ Web-STOMP.
//
// It speaks to the broker exactly like the browser client in web/ does:
// STOMP 1.2 over a WebSocket (subprotocol v12.stomp), one durable,
// per-tab queue declared by a SUBSCRIBE frame with
//
//	destination:/exchange/<exchange>/<bindingKey>
//	id:<queue name>
//	x-queue-name:<queue name>        (tab-<tabid>-<name>)
//	durable:true
//	auto-delete:false
//	x-expires:<ms>                    (default 3600000)
//	ack:client-individual
//	prefetch-count:<n>
//
// or by consuming an existing queue through /amq/queue/<name>.
//
// It exists for tests: Drop simulates a closed tab or a dropped network
// (the websocket is torn down without a STOMP DISCONNECT, so the broker
// requeues every unacknowledged delivery), Close is the graceful path.
package stomptab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

// Defaults used when the corresponding Options / Sub fields are zero.
const (
	DefaultURL       = "ws://127.0.0.1:15674/ws"
	DefaultLogin     = "guest"
	DefaultPasscode  = "guest"
	DefaultHost      = "/"
	DefaultHeartbeat = 10 * time.Second // stompjs default
	DefaultExpires   = time.Hour        // x-expires:3600000
	DefaultPrefetch  = 10
)

// ErrClosed is returned by Next once the tab was closed or dropped and
// every message buffered before that has been handed out.
var ErrClosed = errors.New("stomptab: tab closed")

// ErrBrokerClosed reports that the broker closed the connection while the
// tab waited for a receipt. RabbitMQ 3.10.8 answers a refused operation
// (for example SUBSCRIBE to a queue the tab may not read) by closing the
// socket without an ERROR frame; depending on timing the client sees that
// as go-stomp's "connection closed", "connection closed unexpectedly" or a
// write error (broken pipe, connection reset). All mean the same, so Sync
// maps them to this error.
var ErrBrokerClosed = errors.New("stomptab: broker closed the connection")

// Options configure a tab's STOMP connection.
type Options struct {
	URL      string // default DefaultURL
	Login    string // default "guest" (only when Passcode is empty too)
	Passcode string // default "guest" (only when Login is empty too)
	Host     string // STOMP host header = vhost, default "/" (go-stomp's own default "default" is refused by RabbitMQ)
	// Heartbeat is used for both directions (heart-beat:<ms>,<ms>).
	// Zero means DefaultHeartbeat; negative disables heartbeats (0,0)
	// — beware the broker's 60 s Cowboy idle timeout then.
	Heartbeat time.Duration
	// Logger receives go-stomp's log lines. Default: discarded.
	Logger stomp.Logger
}

func (o Options) withDefaults() Options {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.Login == "" && o.Passcode == "" {
		o.Login, o.Passcode = DefaultLogin, DefaultPasscode
	}
	if o.Host == "" {
		o.Host = DefaultHost
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Heartbeat < 0 {
		o.Heartbeat = 0
	}
	if o.Logger == nil {
		o.Logger = nopLogger{}
	}
	return o
}

// Tab is one browser tab: one WebSocket, one STOMP session, which on the
// broker side is one AMQP channel shared by all its subscriptions.
type Tab struct {
	ws     *websocket.Conn
	conn   *stomp.Conn
	cancel context.CancelFunc

	mu      sync.Mutex
	subs    []*Subscription
	closing bool
}

// Dial opens the WebSocket and performs the STOMP CONNECT handshake.
// ctx bounds only the handshake; the connection lives until Close or Drop.
func Dial(ctx context.Context, opts Options) (*Tab, error) {
	opts = opts.withDefaults()

	ws, _, err := websocket.Dial(ctx, opts.URL, &websocket.DialOptions{
		Subprotocols: []string{"v12.stomp"},
	})
	if err != nil {
		return nil, fmt.Errorf("stomptab: websocket dial %s: %w", opts.URL, err)
	}
	if ws.Subprotocol() != "v12.stomp" {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("stomptab: server did not accept subprotocol v12.stomp (got %q)", ws.Subprotocol())
	}

	// The NetConn context must outlive Dial's ctx: cancelling it closes
	// the connection.
	life, cancel := context.WithCancel(context.Background())
	nc := websocket.NetConn(life, ws, websocket.MessageText)

	type result struct {
		c   *stomp.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := stomp.ConnectWithContext(ctx, nc,
			stomp.ConnOpt.Host(opts.Host),
			stomp.ConnOpt.Login(opts.Login, opts.Passcode),
			stomp.ConnOpt.HeartBeat(opts.Heartbeat, opts.Heartbeat),
			stomp.ConnOpt.AcceptVersion(stomp.V12),
			stomp.ConnOpt.DisconnectReceiptTimeout(5*time.Second),
			stomp.ConnOpt.Logger(opts.Logger),
		)
		done <- result{c, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		cancel()
		_ = ws.CloseNow()
		<-done
		return nil, fmt.Errorf("stomptab: STOMP CONNECT: %w", ctx.Err())
	}
	if r.err != nil {
		cancel()
		_ = ws.CloseNow()
		return nil, fmt.Errorf("stomptab: STOMP CONNECT: %w", r.err)
	}
	return &Tab{ws: ws, conn: r.c, cancel: cancel}, nil
}

// Session is the STOMP session id the broker assigned.
func (t *Tab) Session() string { return t.conn.Session() }

// Sub describes a durable per-tab subscription to an exchange.
type Sub struct {
	Exchange   string // must exist, or the broker fails the SUBSCRIBE and drops the connection
	BindingKey string // e.g. "customer.1.#"
	QueueName  string // tab-<tabid>-<name>; also used as the subscription id
	// Expires is x-expires. Zero means DefaultExpires. The broker works in
	// whole milliseconds. Re-subscribing must use the same value, or the
	// broker closes the connection (PRECONDITION_FAILED, ERROR lost on 3.10.8).
	Expires  time.Duration
	Prefetch int // prefetch-count; zero means DefaultPrefetch
	// Extra headers appended to the SUBSCRIBE frame (e.g. x-queue-type).
	Extra map[string]string
}

// Destination is the STOMP destination the subscription uses:
// /exchange/<exchange>/<bindingKey>, or /exchange/<exchange> for an empty
// binding key. '/' inside a segment is escaped as %2F, the only escape
// RabbitMQ undoes (same as web/internal.js exchangeDestination).
func (s Sub) Destination() string {
	d := "/exchange/" + escapeSegment(s.Exchange)
	if s.BindingKey != "" {
		d += "/" + escapeSegment(s.BindingKey)
	}
	return d
}

func escapeSegment(s string) string { return strings.ReplaceAll(s, "/", "%2F") }

// Headers returns the SUBSCRIBE headers (besides destination and ack)
// in the order they are sent, as name/value pairs.
func (s Sub) Headers() [][2]string {
	exp := s.Expires
	if exp == 0 {
		exp = DefaultExpires
	}
	pf := s.Prefetch
	if pf == 0 {
		pf = DefaultPrefetch
	}
	h := [][2]string{
		{"id", s.QueueName},
		{"durable", "true"},
		{"auto-delete", "false"},
		{"x-queue-name", s.QueueName},
		{"x-expires", strconv.FormatInt(exp.Milliseconds(), 10)},
		{"prefetch-count", strconv.Itoa(pf)},
	}
	for k, v := range s.Extra {
		h = append(h, [2]string{k, v})
	}
	return h
}

// Subscribe sends the durable SUBSCRIBE frame and waits until the broker
// has processed it (queue declared, bound, consumer registered).
//
// go-stomp cannot take a receipt on SUBSCRIBE (the receipt would close
// the subscription channel), so the wait is a BEGIN + ABORT(receipt)
// round trip: the broker handles a session's frames in order, and BEGIN
// and ABORT need no permissions. If the SUBSCRIBE failed, the broker
// closes the socket (on 3.10.8 without delivering the ERROR frame) and
// Subscribe returns an error.
func (t *Tab) Subscribe(ctx context.Context, s Sub) (*Subscription, error) {
	if s.Exchange == "" || s.QueueName == "" {
		return nil, errors.New("stomptab: Sub needs Exchange and QueueName")
	}
	if s.Expires < 0 || (s.Expires > 0 && s.Expires < time.Millisecond) {
		return nil, errors.New("stomptab: Sub.Expires must be 0 (default) or at least 1ms")
	}
	return t.subscribe(ctx, s.Destination(), s.QueueName, s.Headers())
}

// SubscribeQueue consumes an existing queue through /amq/queue/<name>
// without declaring it (the backend-declared-queue model). The id is the
// queue name; prefetch <= 0 means DefaultPrefetch.
func (t *Tab) SubscribeQueue(ctx context.Context, queue string, prefetch int) (*Subscription, error) {
	if queue == "" {
		return nil, errors.New("stomptab: SubscribeQueue needs a queue name")
	}
	if prefetch <= 0 {
		prefetch = DefaultPrefetch
	}
	return t.subscribe(ctx, "/amq/queue/"+escapeSegment(queue), queue, [][2]string{
		{"id", queue},
		{"prefetch-count", strconv.Itoa(prefetch)},
	})
}

func (t *Tab) subscribe(ctx context.Context, dest, id string, headers [][2]string) (*Subscription, error) {
	opts := make([]func(*frame.Frame) error, 0, len(headers))
	for _, h := range headers {
		opts = append(opts, stomp.SubscribeOpt.Header(h[0], h[1]))
	}
	ss, err := t.conn.Subscribe(dest, stomp.AckClientIndividual, opts...)
	if err != nil {
		return nil, fmt.Errorf("stomptab: SUBSCRIBE %s: %w", dest, err)
	}
	sub := newSubscription(t, ss, id, dest)
	t.mu.Lock()
	t.subs = append(t.subs, sub)
	t.mu.Unlock()

	if err := t.Sync(ctx); err != nil {
		return nil, fmt.Errorf("stomptab: SUBSCRIBE %s not confirmed: %w", dest, err)
	}
	return sub, nil
}

// Sync waits until the broker has processed every frame this tab sent so
// far (a BEGIN + ABORT with receipt round trip).
func (t *Tab) Sync(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		tx, err := t.conn.BeginWithError()
		if err == nil {
			err = tx.AbortWithReceipt()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if isClosedByPeer(err) {
			return fmt.Errorf("%w: %w", ErrBrokerClosed, err)
		}
		return err
	case <-ctx.Done():
		// The goroutine ends once the receipt arrives or the tab is closed.
		return ctx.Err()
	}
}

// isClosedByPeer tells whether err is one of the ways a socket closed by
// the other side shows up in go-stomp. A failed socket write reaches the
// receipt waiter as an ERROR frame whose message is the write error's text
// (go-stomp's sendError), so its cause survives only as a suffix of that text.
func isClosedByPeer(err error) bool {
	closed := []error{syscall.EPIPE, syscall.ECONNRESET, io.EOF, net.ErrClosed}
	for _, c := range closed {
		if errors.Is(err, c) {
			return true
		}
	}
	if errors.Is(err, stomp.ErrClosedUnexpectedly) {
		return true
	}
	var se stomp.Error
	if !errors.As(err, &se) {
		return false
	}
	if se.Message == "connection closed" {
		return true
	}
	for _, c := range closed {
		if strings.HasSuffix(se.Message, ": "+c.Error()) {
			return true
		}
	}
	return false
}

// Close is the graceful path (stompjs client.deactivate()): it sends a
// STOMP DISCONNECT (with a receipt request; 3.10.8 answers by closing the
// socket instead) and closes the websocket. No UNSUBSCRIBE is sent.
// Unacked deliveries are requeued by the broker; durable queues stay
// until x-expires. Close waits for the tab's goroutines to end.
func (t *Tab) Close() error {
	if !t.markClosing() {
		return nil
	}
	err := t.conn.Disconnect()
	t.finish()
	// RabbitMQ 3.10.8 never answers DISCONNECT with a RECEIPT: it closes
	// the websocket at once (1000 "STOMP died"), which go-stomp reports
	// as an ERROR "connection closed" on the receipt wait. That is the
	// normal end of a graceful close.
	var se stomp.Error
	if errors.As(err, &se) && se.Message == "connection closed" {
		err = nil
	}
	return err
}

// Drop tears the websocket down without a STOMP DISCONNECT and without a
// WebSocket close handshake, like a killed tab or a dropped network.
// The broker requeues this tab's unacked deliveries (redelivered:true).
func (t *Tab) Drop() {
	if !t.markClosing() {
		return
	}
	_ = t.ws.CloseNow()
	t.finish()
}

func (t *Tab) markClosing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.closing = true
	return true
}

// finish waits until go-stomp's goroutines and our pumps are done.
func (t *Tab) finish() {
	t.cancel()
	_ = t.ws.CloseNow()
	_ = t.conn.MustDisconnect()
	t.mu.Lock()
	subs := append([]*Subscription(nil), t.subs...)
	t.mu.Unlock()
	for _, s := range subs {
		<-s.pumpDone
	}
}

type nopLogger struct{}

func (nopLogger) Debugf(string, ...interface{})   {}
func (nopLogger) Infof(string, ...interface{})    {}
func (nopLogger) Warningf(string, ...interface{}) {}
func (nopLogger) Errorf(string, ...interface{})   {}
func (nopLogger) Debug(string)                    {}
func (nopLogger) Info(string)                     {}
func (nopLogger) Warning(string)                  {}
func (nopLogger) Error(string)                    {}
