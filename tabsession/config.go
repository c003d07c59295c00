package tabsession

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
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
)

// Config configures a Handler. Zero fields get the defaults named on them.
type Config struct {
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
	// Without it bindings are only ever added: a revoked binding keeps
	// routing into an existing tab queue until that queue expires. The
	// user needs the "management" tag. When the management API cannot be
	// asked, session requests fail with 503 (fail closed).
	ManagementURL string

	// WebSTOMPURL is the Web-STOMP endpoint handed to the browser, e.g.
	// wss://example.com/ws (behind a TLS proxy; see the threat model in
	// README.md). Required.
	WebSTOMPURL string

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
	if err := amqpconn.ValidateURL(c.AMQPURL); err != nil {
		bad("AMQPURL %q: %v", amqpconn.RedactURL(c.AMQPURL), err)
	}
	if err := amqpconn.CheckConfig(c.AMQP); err != nil {
		bad("%v", err)
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
