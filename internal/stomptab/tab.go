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
//	exclusive:false                   (RabbitMQ 4.x: else the queue dies with the connection)
//	x-expires:<ms>                    (default 3600000)
//	ack:client-individual
//	prefetch-count:<n>
//
// or by consuming an existing queue through /amq/queue/<name>.
//
// It exists for tests: Drop simulates a closed tab or a dropped network
// (the websocket is torn down without a STOMP DISCONNECT, so the broker
// requeues every unacknowledged delivery), Close is the graceful path.
//
// The STOMP session is its own (wire.go): go-stomp's frame package parses
// and writes frames, but go-stomp's Conn is not used. Its reader hands
// frames to a second goroutine over a bounded channel that only that
// goroutine drains; when the second one stops (a failed write after a cut,
// an abandoned receipt), the reader blocks for ever, and a blocked ACK can
// hold its close lock. Chaos tests reconnect tabs hundreds of times and
// check for leaked goroutines, so here one reader goroutine owns the
// socket's input and never waits on anybody, and every wait also watches
// the connection's end.
package stomptab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/go-stomp/stomp/v3/frame"

	"github.com/durablews/durablews/internal/brokerversion"
)

// Defaults used when the corresponding Options / Sub fields are zero.
const (
	DefaultLogin     = "guest"
	DefaultPasscode  = "guest"
	DefaultHost      = "/"
	DefaultHeartbeat = 10 * time.Second // stompjs default
	DefaultExpires   = time.Hour        // x-expires:3600000
	DefaultPrefetch  = 10
	// DisconnectTimeout bounds Close's wait for the broker to answer
	// DISCONNECT (RabbitMQ answers by closing the socket).
	DisconnectTimeout = 5 * time.Second
)

// ErrClosed is returned by Next once the tab was closed or dropped and
// every message buffered before that has been handed out, and by any
// operation on a tab after Close or Drop.
var ErrClosed = errors.New("stomptab: tab closed")

// ErrBrokerClosed reports that the connection ended without the tab
// closing it: the broker closed the socket, sent an ERROR frame (see
// BrokerError), or the network failed (a failed read or write, or no
// heart-beat heard). RabbitMQ 3.10.8 answers a refused operation (for example
// SUBSCRIBE to a queue the tab may not read) by closing the socket
// without an ERROR frame, so a refusal usually shows up as this error.
var ErrBrokerClosed = errors.New("stomptab: broker closed the connection")

// BrokerError is an ERROR frame from the broker. The broker closes the
// connection after sending one; errors.Is(err, ErrBrokerClosed) holds.
type BrokerError struct {
	Message string // the message header
	Body    string
}

func (e *BrokerError) Error() string {
	if e.Body == "" {
		return "stomptab: broker sent ERROR: " + e.Message
	}
	return "stomptab: broker sent ERROR: " + e.Message + ": " + strings.TrimSpace(e.Body)
}

// Is makes a BrokerError match ErrBrokerClosed.
func (e *BrokerError) Is(target error) bool { return target == ErrBrokerClosed }

// Options configure a tab's STOMP connection.
type Options struct {
	URL      string // default: the shared test broker (brokerversion.SharedWebSTOMPURL)
	Login    string // default "guest" (only when Passcode is empty too)
	Passcode string // default "guest" (only when Login is empty too)
	Host     string // STOMP host header = vhost, default "/"
	// Heartbeat is used for both directions (heart-beat:<ms>,<ms>).
	// Zero means DefaultHeartbeat; negative disables heartbeats (0,0)
	// — beware the broker's 60 s Cowboy idle timeout then. A tab that
	// hears nothing for twice the negotiated incoming interval ends the
	// connection, like stompjs.
	Heartbeat time.Duration
}

func (o Options) withDefaults() Options {
	if o.URL == "" {
		o.URL = brokerversion.SharedWebSTOMPURL()
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
	return o
}

// Tab is one browser tab: one WebSocket, one STOMP session, which on the
// broker side is one AMQP channel shared by all its subscriptions.
type Tab struct {
	ws      *websocket.Conn
	nc      net.Conn
	cancel  context.CancelFunc // ends nc's context
	session string

	wmu sync.Mutex // one frame at a time on the socket
	w   *frame.Writer

	done   chan struct{} // closed when the reader has ended; err is set then
	hbDone chan struct{} // closed when the heart-beat sender has ended

	mu       sync.Mutex
	subs     map[string]*Subscription
	receipts map[string]chan struct{}
	nextID   uint64
	closing  bool  // Close or Drop was called
	err      error // why the connection ended
}

// Dial opens the WebSocket and performs the STOMP CONNECT handshake.
// ctx bounds only the handshake; the connection lives until Close or Drop.
// A refused CONNECT returns a *BrokerError (e.g. "Bad CONNECT").
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
	t := &Tab{
		ws:       ws,
		nc:       websocket.NetConn(life, ws, websocket.MessageText),
		cancel:   cancel,
		done:     make(chan struct{}),
		hbDone:   make(chan struct{}),
		subs:     make(map[string]*Subscription),
		receipts: make(map[string]chan struct{}),
	}
	t.w = frame.NewWriter(t.nc)
	r := frame.NewReader(t.nc)

	// ctx bounds the handshake by closing the socket under it.
	stop := context.AfterFunc(ctx, func() { _ = ws.CloseNow() })
	out, in, err := t.connect(r, opts)
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		_ = ws.CloseNow()
		return nil, fmt.Errorf("stomptab: STOMP CONNECT: %w", err)
	}
	go t.readLoop(r, in)
	go t.heartbeats(out)
	return t, nil
}

// connect sends CONNECT and reads CONNECTED; it returns the negotiated
// heart-beat intervals (send, expect).
func (t *Tab) connect(r *frame.Reader, opts Options) (out, in time.Duration, err error) {
	hb := opts.Heartbeat.Milliseconds()
	f := frame.New(frame.CONNECT,
		frame.AcceptVersion, "1.2",
		frame.Host, opts.Host,
		frame.Login, opts.Login,
		frame.Passcode, opts.Passcode,
		frame.HeartBeat, fmt.Sprintf("%d,%d", hb, hb))
	if err := t.w.Write(f); err != nil {
		return 0, 0, err
	}
	var resp *frame.Frame
	for resp == nil { // skip heart-beats
		if resp, err = r.Read(); err != nil {
			return 0, 0, err
		}
	}
	switch resp.Command {
	case frame.CONNECTED:
	case frame.ERROR:
		return 0, 0, brokerError(resp)
	default:
		return 0, 0, fmt.Errorf("unexpected %s frame", resp.Command)
	}
	if v := resp.Header.Get(frame.Version); v != "1.2" {
		return 0, 0, fmt.Errorf("broker speaks STOMP %q, want 1.2", v)
	}
	t.session = resp.Header.Get(frame.Session)
	sx, sy := time.Duration(0), time.Duration(0)
	if h, ok := resp.Header.Contains(frame.HeartBeat); ok {
		if sx, sy, err = frame.ParseHeartBeat(h); err != nil {
			return 0, 0, fmt.Errorf("CONNECTED heart-beat %q: %w", h, err)
		}
	}
	out, in = negotiateHeartbeats(opts.Heartbeat, sx, sy)
	return out, in, nil
}

// negotiateHeartbeats applies STOMP 1.2's rule to heart-beat:<mine>,<mine>
// answered by heart-beat:<sx>,<sy>: each direction runs at the larger of
// the two wishes, or not at all when either side said 0.
func negotiateHeartbeats(mine, sx, sy time.Duration) (out, in time.Duration) {
	if mine > 0 && sy > 0 {
		out = max(mine, sy)
	}
	if mine > 0 && sx > 0 {
		in = max(mine, sx)
	}
	return out, in
}

func brokerError(f *frame.Frame) *BrokerError {
	return &BrokerError{Message: f.Header.Get(frame.Message), Body: string(f.Body)}
}

// Session is the STOMP session id the broker assigned.
func (t *Tab) Session() string { return t.session }

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
		{"exclusive", "false"},
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
	f := frame.New(frame.SUBSCRIBE, frame.Destination, dest, frame.Ack, "client-individual")
	for _, h := range headers {
		f.Header.Add(h[0], h[1])
	}
	sub := newSubscription(t, id, dest)
	t.mu.Lock()
	if err := t.endedLocked(); err != nil {
		t.mu.Unlock()
		return nil, fmt.Errorf("stomptab: SUBSCRIBE %s: %w", dest, err)
	}
	if _, dup := t.subs[id]; dup {
		t.mu.Unlock()
		return nil, fmt.Errorf("stomptab: SUBSCRIBE %s: this tab already has a subscription with id %q", dest, id)
	}
	t.subs[id] = sub // before the frame: the first MESSAGE may follow at once
	t.mu.Unlock()

	if err := t.write(f); err != nil {
		return nil, fmt.Errorf("stomptab: SUBSCRIBE %s: %w", dest, err)
	}
	if err := t.Sync(ctx); err != nil {
		return nil, fmt.Errorf("stomptab: SUBSCRIBE %s not confirmed: %w", dest, err)
	}
	return sub, nil
}

// Sync waits until the broker has processed every frame this tab sent so
// far (a BEGIN + ABORT with receipt round trip).
func (t *Tab) Sync(ctx context.Context) error {
	tx := t.newID("tx-")
	if err := t.write(frame.New(frame.BEGIN, frame.Transaction, tx)); err != nil {
		return err
	}
	return t.request(ctx, frame.New(frame.ABORT, frame.Transaction, tx))
}

// Close is the graceful path (stompjs client.deactivate()): it sends a
// STOMP DISCONNECT with a receipt request, waits up to DisconnectTimeout
// for the broker's answer (3.10.8 closes the socket instead of sending the
// RECEIPT; both are the normal end) and closes the websocket. No
// UNSUBSCRIBE is sent: unacked deliveries are requeued by the broker and
// durable queues stay until x-expires. Close waits for the tab's
// goroutines to end. It returns an error only if the broker did not
// answer the DISCONNECT; a tab whose connection had already ended closes
// without error.
func (t *Tab) Close() error {
	if !t.markClosing() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), DisconnectTimeout)
	defer cancel()
	err := t.request(ctx, frame.New(frame.DISCONNECT))
	t.finish()
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("stomptab: DISCONNECT not answered within %v; the socket was closed", DisconnectTimeout)
	}
	return nil
}

// Drop tears the websocket down without a STOMP DISCONNECT and without a
// WebSocket close handshake, like a killed tab or a dropped network.
// The broker requeues this tab's unacked deliveries (redelivered:true).
func (t *Tab) Drop() {
	if !t.markClosing() {
		return
	}
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

// finish closes the socket and waits until the reader and the heart-beat
// sender have ended.
func (t *Tab) finish() {
	_ = t.ws.CloseNow()
	t.cancel()
	<-t.done
	<-t.hbDone
}
