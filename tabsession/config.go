package tabsession

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
	"github.com/durablews/durablews/internal/defaults"
)

// Defaults of Config.
const (
	DefaultResourceServerID = "rabbitmq"
	DefaultTokenTTL         = 10 * time.Minute
	DefaultQueueExpires     = time.Hour
	DefaultQueueMaxLength   = 10000
	// DefaultMaxQueuesPerUser is Config.MaxQueuesPerUser's default.
	DefaultMaxQueuesPerUser = 32
	// DefaultQueueCreateBurst and DefaultQueueCreateInterval are the
	// defaults of the per-user rate limit on creating tab queues: 20 at
	// once, then one every 3 s (20 a minute).
	DefaultQueueCreateBurst    = 20
	DefaultQueueCreateInterval = 3 * time.Second
	DefaultBrokerTimeout       = 10 * time.Second
)

// Queue types for Config.QueueType.
const (
	// QueueClassic is a classic queue: cheap to declare, lives on one node.
	QueueClassic = "classic"
	// QueueQuorum is a quorum queue: replicated over the cluster, survives
	// the loss of a minority of nodes with its messages.
	QueueQuorum = "quorum"
)

// exchangeNamePattern is what Config.ReceiptsExchange may hold.
var exchangeNamePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,127}$`)

// Config configures a Handler. Zero fields get the defaults named on them.
type Config struct {
	// AMQPURL of the service's own broker user, e.g.
	// amqp://svc:secret@127.0.0.1:5672/. This user declares and binds the
	// tab queues, so it needs configure and write on ^tab- queues and read
	// on the exchanges tabs are bound to. It authenticates against the
	// broker's internal backend (auth_backends.1), not with a token. The
	// vhost of the URL (or AMQP.Vhost) is the vhost tokens are scoped to.
	AMQPURL string
	// AMQPURLs, instead of AMQPURL, lists one URL per cluster node (same
	// user and vhost). Requests share one connection; when it is lost the
	// next request dials the next URL that answers, so sessions keep being
	// served while a node is down. Set AMQPURL or AMQPURLs, not both.
	AMQPURLs []string
	// AMQP is passed to amqp091-go's DialConfig (TLS, vhost, heartbeat).
	// Dial defaults to a 5 s connect timeout.
	AMQP amqp.Config

	// ManagementURL, optional, is the management API with credentials,
	// e.g. http://svc:secret@127.0.0.1:15672. When set, every session
	// request also removes bindings of the tab's queue that the user is no
	// longer allowed (a revoked binding disappears at the next renewal).
	// Without it bindings are only ever added: a revoked binding keeps
	// routing into an existing tab queue until that queue expires. The
	// user needs the "management" tag. When the management API cannot be
	// asked, session requests fail with 503 (fail closed).
	ManagementURL string
	// ManagementURLs, instead of ManagementURL, lists one management API
	// per cluster node; a request that cannot reach one asks the next.
	ManagementURLs []string

	// WebSTOMPURL is the Web-STOMP endpoint handed to the browser, e.g.
	// wss://example.com/ws (behind a TLS proxy; see the threat model in
	// README.md). Required.
	WebSTOMPURL string
	// WebSTOMPURLs, instead of WebSTOMPURL, lists every node's Web-STOMP
	// endpoint. The session's "urls" carries them all (its "url" the
	// first) and the browser client moves to the next one when a
	// connection fails. Behind one load-balanced URL, set WebSTOMPURL.
	WebSTOMPURLs []string

	// Authenticate identifies the application's user behind a request,
	// typically from the application's own session cookie. It returns a
	// stable, non-empty user id. Return an error wrapping ErrForbidden for
	// HTTP 403; any other error (ErrUnauthenticated, or none with an empty
	// user) is HTTP 401. Required.
	Authenticate func(r *http.Request) (user string, err error)

	// Bindings returns every binding the user may have. A session gets all
	// of them, or the subset the request lists. An error wrapping
	// ErrForbidden, or an empty list, is HTTP 403; another error is HTTP
	// 500 (logged, not shown to the client). Required.
	Bindings func(ctx context.Context, user string) ([]Binding, error)

	// Streams, optional, returns the broadcast streams (see package
	// broadcast) the user's tabs may read. Every session grants all of them:
	// the token gets read on each, and the session lists them. Declare them
	// first (broadcast.Declare): Prepare fails with 500 on a stream that
	// does not exist. An error wrapping ErrForbidden is HTTP 403, another
	// error HTTP 500. Nil grants no streams.
	Streams func(ctx context.Context, user string) ([]string, error)
	// StreamEndWait bounds how long Prepare waits for each granted stream's
	// end position (broadcast.EndPosition, all streams at once); an empty
	// stream always takes this long. Default broadcast.DefaultEndWait.
	StreamEndWait time.Duration

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
	// On RabbitMQ 3.10 and 4.0 a connection opened before expiry keeps
	// consuming after it; 4.3 closes it at expiry (ERROR "Credential
	// expired"), and the browser client reconnects with a new session.
	TokenTTL time.Duration

	// QueueNameKey is the server secret that keys the HMAC deriving the
	// per-user part of a tab queue's name, so a queue name does not reveal
	// the user to anyone who can guess user ids. Every instance of the
	// service must use the same key, and changing it gives every tab a new,
	// empty queue. Default: derived from SigningKey (so rotating SigningKey
	// without setting QueueNameKey renames the queues too).
	QueueNameKey []byte

	// QueueExpires is the tab queue's x-expires: the broker deletes the
	// queue (and its messages) after it had no consumer this long.
	// Default 1 h. Keep it stable: a changed value only applies to new
	// queues (existing ones keep theirs).
	QueueExpires time.Duration
	// QueueMaxLength is the tab queue's x-max-length (ready messages);
	// beyond it the oldest are dropped (x-overflow drop-head). Default
	// 10000. Same stability note as QueueExpires.
	QueueMaxLength int
	// QueueType is QueueClassic (default) or QueueQuorum. A classic tab
	// queue lives on the node that declared it and is unusable while that
	// node is down; a quorum queue keeps its messages and consumers
	// through the loss of a minority of nodes, at a higher cost per
	// declare and per idle queue. Changing it applies to new queues only:
	// a tab whose queue exists keeps it (see the package documentation).
	QueueType string

	// MaxQueuesPerUser caps the tab queues one user holds at once, so that
	// one logged-in user cannot fill the broker (every tab queue gets a
	// copy of each of the user's events, up to QueueMaxLength). A session
	// request that takes the user beyond the cap deletes the user's least
	// recently used tab queue (by last session request) that no tab is
	// reading (no consumer), and only when every one is being read, the
	// least recently used of those. It does not refuse: refusing would lock
	// the user out of new pages for up to QueueExpires, since every page
	// render (Prepare) makes a new queue and closed tabs leave theirs
	// behind. Keep the cap above the number of tabs a user keeps open at
	// once; a tab whose queue was deleted gets a new one at its next
	// session request, with queue_created: true. Counted per Handler, from
	// the session requests it served (see the threat model in README.md).
	// Default DefaultMaxQueuesPerUser (32); negative means no cap.
	MaxQueuesPerUser int
	// QueueCreateBurst and QueueCreateInterval rate-limit the creation of
	// tab queues per user (a token bucket): a user may create
	// QueueCreateBurst queues at once, then one per QueueCreateInterval.
	// Beyond it a request that needs a new queue answers 429 with
	// Retry-After (the browser client retries); renewals of existing
	// queues and other users are not affected. Zero means the defaults
	// (20 and 3 s); a negative QueueCreateBurst means no rate limit.
	QueueCreateBurst    int
	QueueCreateInterval time.Duration
	// BrokerTimeout bounds the broker's part of a session request (queue
	// declare and bindings): past it the request answers 503 and the
	// client retries. RabbitMQ 4.x takes about a minute to refuse an
	// operation on a classic queue whose node is down. Default 10 s.
	BrokerTimeout time.Duration

	// Receipts, when true, lets every tab send delivery receipts (package
	// receipts; docs/receipts.md): the session carries "receipts" with the
	// tab's destination, /exchange/<ReceiptsExchange>/<user key>.<tab id>,
	// and the token may write to that exchange with exactly that routing
	// key, so a tab can neither send a receipt in another tab's or user's
	// name nor publish anywhere else. The Handler declares the exchange
	// (durable topic) once per connection, so the service's user needs
	// configure on it; an existing exchange of another type fails every
	// session request with 500, since RabbitMQ checks routing keys on topic
	// exchanges only. Default false: tokens grant no write at all.
	Receipts bool
	// ReceiptsExchange names the receipts exchange. Default
	// DefaultReceiptsExchange ("durablews.receipts", receipts.DefaultExchange).
	// Only with Receipts.
	ReceiptsExchange string

	// TrustedOrigins are extra origins (scheme://host[:port]) whose pages
	// may call the endpoint cross-origin; see net/http.CrossOriginProtection.
	// By default only same-origin browser requests are accepted.
	TrustedOrigins []string
}

func (c *Config) setDefaults() {
	defaults.Set(&c.ResourceServerID, DefaultResourceServerID)
	defaults.Set(&c.TokenTTL, DefaultTokenTTL)
	defaults.Set(&c.QueueExpires, DefaultQueueExpires)
	defaults.Set(&c.QueueMaxLength, DefaultQueueMaxLength)
	defaults.Set(&c.QueueType, QueueClassic)
	defaults.Set(&c.MaxQueuesPerUser, DefaultMaxQueuesPerUser)
	defaults.Set(&c.QueueCreateBurst, DefaultQueueCreateBurst)
	defaults.Set(&c.QueueCreateInterval, DefaultQueueCreateInterval)
	defaults.Set(&c.BrokerTimeout, DefaultBrokerTimeout)
	if c.Receipts {
		defaults.Set(&c.ReceiptsExchange, DefaultReceiptsExchange)
	}
	if c.AMQP.Dial == nil {
		c.AMQP.Dial = amqp.DefaultDial(5 * time.Second)
	}
}

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("tabsession: invalid config: "+format, args...))
	}
	switch {
	case c.AMQPURL != "" && len(c.AMQPURLs) > 0:
		bad("AMQPURL and AMQPURLs are both set: put every node's URL in AMQPURLs and leave AMQPURL empty")
	case len(c.AMQPURLs) > 0:
		for i, u := range c.AMQPURLs {
			if err := amqpconn.ValidateURL(u); err != nil {
				bad("AMQPURLs[%d] %q: %v", i, amqpconn.RedactURL(u), err)
			}
		}
	default:
		if err := amqpconn.ValidateURL(c.AMQPURL); err != nil {
			bad("AMQPURL %q: %v", amqpconn.RedactURL(c.AMQPURL), err)
		}
	}
	if err := amqpconn.CheckConfig(c.AMQP); err != nil {
		bad("%v", err)
	}
	if c.ManagementURL != "" && len(c.ManagementURLs) > 0 {
		bad("ManagementURL and ManagementURLs are both set: put every node's URL in ManagementURLs and leave ManagementURL empty")
	}
	for i, m := range c.managementURLs() {
		if u, err := url.Parse(m); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("ManagementURL %q (#%d): want http(s)://user:pass@host:port", amqpconn.RedactURL(m), i)
		}
	}
	if c.WebSTOMPURL != "" && len(c.WebSTOMPURLs) > 0 {
		bad("WebSTOMPURL and WebSTOMPURLs are both set: list every node in WebSTOMPURLs, or give one load-balanced WebSTOMPURL")
	}
	if len(c.webSTOMPURLs()) == 0 {
		bad("WebSTOMPURL is empty: give the Web-STOMP endpoint browsers connect to, like wss://example.com/ws")
	}
	for _, w := range c.webSTOMPURLs() {
		if u, err := url.Parse(w); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			bad("WebSTOMPURL %q: want ws://host:port/ws or wss://host/ws", w)
		}
	}
	if c.Authenticate == nil {
		bad("Authenticate is nil: give a func that returns the application's user for a request")
	}
	if c.Bindings == nil {
		bad("Bindings is nil: give a func that returns the exchange/key bindings a user may have")
	}
	if c.StreamEndWait < 0 {
		bad("StreamEndWait %v is negative: give how long Prepare waits for a stream's end, or 0 for the default", c.StreamEndWait)
	}
	if len(c.SigningKey) < MinSigningKeyBytes {
		bad("SigningKey is %d bytes; need at least %d (the broker's HS256 key; see LoadSigningKey)", len(c.SigningKey), MinSigningKeyBytes)
	}
	if c.QueueNameKey != nil && len(c.QueueNameKey) < MinSigningKeyBytes {
		bad("QueueNameKey is %d bytes; need at least %d, or leave it nil to derive it from SigningKey", len(c.QueueNameKey), MinSigningKeyBytes)
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
	if c.BrokerTimeout < 100*time.Millisecond {
		bad("BrokerTimeout %v must be at least 100ms", c.BrokerTimeout)
	}
	if c.QueueType != QueueClassic && c.QueueType != QueueQuorum {
		bad("QueueType %q: want %q (default) or %q", c.QueueType, QueueClassic, QueueQuorum)
	}
	if c.QueueMaxLength <= 0 {
		bad("QueueMaxLength %d must be positive", c.QueueMaxLength)
	}
	if c.QueueCreateInterval < 0 {
		bad("QueueCreateInterval %v is negative: give the time between two queue creations of one user, or 0 for the default (%v)", c.QueueCreateInterval, DefaultQueueCreateInterval)
	}
	switch {
	case !c.Receipts && c.ReceiptsExchange != "":
		bad("ReceiptsExchange %q is set but Receipts is false: set Receipts to let tabs send delivery receipts, or leave ReceiptsExchange empty", c.ReceiptsExchange)
	case c.Receipts && !exchangeNamePattern.MatchString(c.ReceiptsExchange):
		bad("ReceiptsExchange %q: want 1 to 127 characters of A-Z a-z 0-9 . _ - (it goes into token scopes and STOMP destinations), or empty for %q", c.ReceiptsExchange, DefaultReceiptsExchange)
	}
	for _, o := range c.TrustedOrigins {
		if err := http.NewCrossOriginProtection().AddTrustedOrigin(o); err != nil {
			bad("TrustedOrigins %q: %v", o, err)
		}
	}
	return errors.Join(errs...)
}

// amqpURLs is AMQPURLs, or AMQPURL alone.
func (c Config) amqpURLs() []string { return oneOrList(c.AMQPURL, c.AMQPURLs) }

// managementURLs is ManagementURLs, or ManagementURL alone, or none.
func (c Config) managementURLs() []string { return oneOrList(c.ManagementURL, c.ManagementURLs) }

// webSTOMPURLs is WebSTOMPURLs, or WebSTOMPURL alone.
func (c Config) webSTOMPURLs() []string { return oneOrList(c.WebSTOMPURL, c.WebSTOMPURLs) }

func oneOrList(one string, list []string) []string {
	if len(list) > 0 {
		return list
	}
	if one == "" {
		return nil
	}
	return []string{one}
}
