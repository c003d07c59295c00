package durablews

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	wamqp "github.com/ThreeDotsLabs/watermill-amqp/v2/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
	"github.com/durablews/durablews/internal/defaults"
)

// RoutingKeyMetadataKey is the message metadata key the default routing-key
// function reads. Set it on every message published to a topic or direct
// exchange:
//
//	msg.Metadata.Set(durablews.RoutingKeyMetadataKey, "customer.42.order_created")
const RoutingKeyMetadataKey = "routing_key"

// Exchange kinds understood by RabbitMQ.
const (
	KindTopic   = "topic"
	KindDirect  = "direct"
	KindFanout  = "fanout"
	KindHeaders = "headers"
)

// Defaults applied by setDefaults to zero-valued fields.
const (
	DefaultConfirmTimeout  = 30 * time.Second
	DefaultMaxInFlight     = 256
	DefaultChannels        = 1
	DefaultMaxPayloadBytes = 16 << 20
	DefaultDialTimeout     = 5 * time.Second
)

// Exchange is the durable exchange a Watermill topic is published to.
type Exchange struct {
	// Name of the exchange on the broker. Required.
	Name string
	// Kind is one of KindTopic (default), KindDirect, KindFanout, KindHeaders.
	Kind string
	// Passive means the exchange must already exist: the publisher checks
	// it (exchange.declare passive) instead of declaring it, and publishing
	// fails with a clear error when it is missing. Use it when operators own
	// the topology.
	Passive bool
}

// needsRoutingKey reports whether messages to this exchange are routed by
// key, so a missing key is a mistake rather than a no-op.
func (e Exchange) needsRoutingKey() bool {
	return e.Kind == KindTopic || e.Kind == KindDirect
}

// RoutingKeyFunc returns the routing key of msg published to topic. Return
// an error to reject the message; Publish then reports it by UUID and
// publishes nothing of that batch.
type RoutingKeyFunc func(topic string, msg *message.Message) (string, error)

// RoutingKeyFromMetadata is the default RoutingKeyFunc: it reads
// RoutingKeyMetadataKey from the message metadata. An empty key is returned
// as "" without error; Publish decides whether the exchange needs one.
func RoutingKeyFromMetadata(_ string, msg *message.Message) (string, error) {
	return msg.Metadata.Get(RoutingKeyMetadataKey), nil
}

// Backoff controls the delay between reconnect attempts: Initial, doubled
// (Multiplier) after each failure up to Max, with up to 50% random jitter.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
}

// Delay returns the wait before reconnect attempt n (0-based), without jitter.
func (b Backoff) Delay(n int) time.Duration {
	d := float64(b.Initial)
	for i := 0; i < n && d < float64(b.Max); i++ {
		d *= b.Multiplier
	}
	if d > float64(b.Max) {
		d = float64(b.Max)
	}
	return time.Duration(d)
}

// Config configures a Publisher. Start from NewConfig; zero fields get
// defaults in NewPublisher.
type Config struct {
	// URLs of the broker nodes, e.g. "amqp://user:pass@host:5672/vhost".
	// Each Publisher shuffles its copy of the list once, so a fleet of
	// publishers given the same list spreads over a cluster's nodes (as
	// RabbitMQ's own clients do), then tries the URLs in that order;
	// after a lost connection it moves on to the next one. Set
	// KeepURLOrder to use the order given instead.
	URLs []string

	// KeepURLOrder makes the Publisher try URLs in the order given rather
	// than shuffled: for a preferred node (the nearest one, say) with the
	// others as fallbacks. After a failover the publisher stays on the
	// node it moved to until that one is lost too.
	KeepURLOrder bool

	// Exchanges maps Watermill topics to exchanges. NewConfig maps each
	// exchange's name to itself.
	Exchanges map[string]Exchange

	// ExchangeFor, when set, maps topics that are not in Exchanges, for
	// code that generates topic names (Watermill's CQRS component does).
	// Return false for a topic that is not yours: Publish then fails with
	// an error naming the known topics. It is called on every Publish to
	// such a topic, so keep it cheap and deterministic; the Exchange it
	// returns is checked like an entry of Exchanges (Kind defaults to
	// KindTopic).
	ExchangeFor func(topic string) (Exchange, bool)

	// RoutingKey computes a message's routing key. Default:
	// RoutingKeyFromMetadata. Fanout and headers exchanges do not route by
	// it, but a key given is still sent: consumers see it on the delivery
	// and STOMP clients in the destination header.
	RoutingKey RoutingKeyFunc

	// Marshaler turns Watermill messages into AMQP publishings. Default:
	// DefaultMarshaler{}. Publish rejects (ErrInvalidMessage) a publishing that is
	// not persistent, since the guarantee needs it, or that AMQP cannot
	// encode (e.g. a uint header value); it fills MessageId from the UUID
	// when the marshaler leaves it empty.
	Marshaler wamqp.Marshaler

	// ConfirmTimeout bounds how long Publish waits for all of its messages
	// to be confirmed, including time spent reconnecting. Default 30s.
	ConfirmTimeout time.Duration

	// RetryNacks sends a message the broker nacked again, with the same
	// MessageId, after a short jittered back-off (on the same connection,
	// or the next one if it was lost), until it is confirmed or
	// ConfirmTimeout runs out; only then does Publish report ErrNacked.
	// On a cluster a nack mostly means "not now": a quorum queue whose
	// leader moved (a node died or restarted) cannot take the message
	// until its new leader is elected. A retried message may reach the
	// queues that did take it twice; the browser client drops the
	// duplicate by its message id. Leave it off when nacks mean "never",
	// e.g. a full queue with x-overflow reject-publish on one node: a
	// caller would then wait ConfirmTimeout for the same answer.
	// NewClusterConfig turns it on.
	RetryNacks bool

	// OnConnect, when set, runs on every new connection (the first one and
	// each reconnect) before the Publisher uses it, so before it
	// republishes the messages whose confirm was lost with the previous
	// connection. Use it to wait until what the messages are routed to can
	// take them again, e.g. broadcast.WaitReady for a stream that is still
	// recovering after a broker restart (RabbitMQ confirms messages routed
	// to such a stream without storing them). ctx ends when the Publisher
	// closes, and for the first connection after ConfirmTimeout. An error
	// counts as a failed connection attempt: it is logged, the connection
	// is closed and the next URL is tried after the usual back-off
	// (NewPublisher returns the error when no URL passes). Publish calls
	// wait for it within their ConfirmTimeout.
	OnConnect func(ctx context.Context, conn *amqp.Connection) error

	// Mandatory makes unroutable messages (no queue bound for the routing
	// key) an error instead of a silent drop. Off by default because a
	// message for a user with no open tab is normally not an error. With
	// it, each message carries the header PublishTokenHeader, which the
	// broker's return brings back to name the publish.
	Mandatory bool

	// MaxInFlight bounds unconfirmed messages across all callers. Publish
	// blocks (within ConfirmTimeout) when the limit is reached. Default 256.
	MaxInFlight int

	// Channels is how many AMQP channels publish in parallel to each
	// exchange on the one connection. Default 1, which already pipelines
	// MaxInFlight messages. Exchanges never share a channel, so an exchange
	// deleted under the publisher (a channel error) does not disturb the
	// others.
	Channels int

	// Reconnect is the back-off between reconnect attempts.
	// Default 100ms doubling up to 10s.
	Reconnect Backoff

	// DialTimeout bounds each connection attempt, TCP connect and AMQP
	// handshake, so an unreachable URL in URLs costs little. Default 5s.
	// Not used when AMQP.Dial is set: that dialer bounds itself.
	DialTimeout time.Duration

	// AMQP is passed to amqp091-go's DialConfig (TLS, heartbeat, vhost,
	// client properties, a custom net dialer). Leave Recovery unset.
	AMQP amqp.Config

	// BinaryFrames says the broker runs Web-STOMP with
	// web_stomp.ws_frame = binary. With the default text frames a payload
	// that is not valid UTF-8 cannot be delivered to a browser (the socket
	// closes and the message is redelivered forever), so Publish rejects it.
	BinaryFrames bool

	// MaxPayloadBytes rejects larger payloads at publish time. Default 16 MiB.
	MaxPayloadBytes int

	// Observer, when set, is told about every publish, confirm, failure
	// and reconnect; see package prommetrics for Prometheus.
	Observer Observer
}

// NewConfig returns the preset for browser delivery: one broker URL, each
// exchange durable and reachable under a topic equal to its name (kind
// topic unless set), persistent messages, publisher confirms (always on),
// routing keys from RoutingKeyMetadataKey.
func NewConfig(url string, exchanges ...Exchange) Config {
	c := Config{URLs: []string{url}, Exchanges: make(map[string]Exchange, len(exchanges))}
	for _, e := range exchanges {
		c.Exchanges[e.Name] = e
	}
	c.setDefaults()
	return c
}

// Presets of NewClusterConfig.
const (
	// ClusterConfirmTimeout is the ConfirmTimeout of NewClusterConfig. It
	// equals DefaultConfirmTimeout on purpose: the default already leaves
	// room for a quorum queue leader election after a node is lost
	// (measured up to ~12 s on a loaded 2-core machine with 3.10.8), a
	// reconnect to another node and the republishing and retries that
	// follow, and a longer one would only make callers wait longer for a
	// cluster that cannot take a message. The cluster soak and chaos tests
	// ran with it. Raise ConfirmTimeout if your elections take longer.
	ClusterConfirmTimeout = DefaultConfirmTimeout
	// ClusterDialTimeout bounds a connection attempt to a node: a dead
	// node should cost little before the next one is tried.
	ClusterDialTimeout = 2 * time.Second
)

// NewClusterConfig returns the preset for a RabbitMQ cluster whose tab
// queues are quorum queues: NewConfig with every node's URL in urls and
// what the guarantee needs when nodes come and go:
//
//   - URLs shuffled once per Publisher (KeepURLOrder false), so a fleet
//     spreads over the nodes; on a lost connection the publisher moves
//     on to the next node, reconnecting with a short back-off (100 ms
//     doubling up to 1 s: the other nodes are up) and
//     ClusterDialTimeout per attempt.
//   - RetryNacks: while a quorum queue's leader moves, the broker nacks
//     what is routed to it; those messages are sent again until they
//     are confirmed, so a caller sees ErrNacked only when the cluster
//     could not take a message within ConfirmTimeout.
//   - ConfirmTimeout ClusterConfirmTimeout, which is the default (30 s):
//     the preset does not change it, because the default is already long
//     enough for a leader election plus a reconnect.
//   - Mandatory: a classic queue whose node is down does not exist for
//     routing; RabbitMQ confirms a message routed only to it and drops
//     it. With Mandatory it is returned, and Publish fails with
//     ErrUnroutable instead of returning nil. (A message that also
//     reached a live queue is not returned: use quorum tab queues on a
//     cluster.)
//
// Change any field afterwards as with NewConfig.
func NewClusterConfig(urls []string, exchanges ...Exchange) Config {
	c := NewConfig("", exchanges...)
	c.URLs = slices.Clone(urls)
	c.RetryNacks = true
	c.Mandatory = true
	c.ConfirmTimeout = ClusterConfirmTimeout
	c.DialTimeout = ClusterDialTimeout
	c.Reconnect = Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2}
	return c
}

func (c *Config) setDefaults() {
	for topic, e := range c.Exchanges {
		if e.Kind == "" {
			e.Kind = KindTopic
			c.Exchanges[topic] = e
		}
	}
	if c.RoutingKey == nil {
		c.RoutingKey = RoutingKeyFromMetadata
	}
	defaults.Set[wamqp.Marshaler](&c.Marshaler, DefaultMarshaler{})
	defaults.Set(&c.ConfirmTimeout, DefaultConfirmTimeout)
	defaults.Set(&c.MaxInFlight, DefaultMaxInFlight)
	defaults.Set(&c.Channels, DefaultChannels)
	defaults.Set(&c.Reconnect.Initial, 100*time.Millisecond)
	defaults.Set(&c.Reconnect.Max, 10*time.Second)
	defaults.Set(&c.Reconnect.Multiplier, 2)
	defaults.Set(&c.MaxPayloadBytes, DefaultMaxPayloadBytes)
	defaults.Set(&c.DialTimeout, DefaultDialTimeout)
	defaults.Set[Observer](&c.Observer, nopObserver{})
}

// Validate reports every invalid field at once; each message names the
// field and says what to do.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("durablews: invalid config: "+format, args...))
	}
	if len(c.URLs) == 0 {
		bad("URLs is empty: give at least one broker URL like amqp://guest:guest@127.0.0.1:5672/")
	}
	for i, u := range c.URLs {
		if err := amqpconn.ValidateURL(u); err != nil {
			bad("URLs[%d] %q: %v", i, amqpconn.RedactURL(u), err)
		}
	}
	if len(c.Exchanges) == 0 && c.ExchangeFor == nil {
		bad("Exchanges is empty and ExchangeFor is nil: map at least one topic to an Exchange (NewConfig(url, durablews.Exchange{Name: \"events\"}))")
	}
	for _, topic := range sortedKeys(c.Exchanges) {
		if err := checkExchange(topic, c.Exchanges[topic], "Exchanges"); err != nil {
			bad("%v", err)
		}
	}
	if c.RoutingKey == nil {
		bad("RoutingKey is nil: leave it unset in NewConfig or use durablews.RoutingKeyFromMetadata")
	}
	if c.Marshaler == nil {
		bad("Marshaler is nil: use durablews.DefaultMarshaler{}")
	}
	if c.ConfirmTimeout <= 0 {
		bad("ConfirmTimeout %v must be positive", c.ConfirmTimeout)
	}
	if c.MaxInFlight <= 0 {
		bad("MaxInFlight %d must be positive", c.MaxInFlight)
	}
	if c.Channels <= 0 || c.Channels > 64 {
		bad("Channels %d must be between 1 and 64", c.Channels)
	}
	if c.Reconnect.Initial <= 0 || c.Reconnect.Max < c.Reconnect.Initial || c.Reconnect.Multiplier < 1 {
		bad("Reconnect %+v: need Initial > 0, Max >= Initial, Multiplier >= 1", c.Reconnect)
	}
	if c.MaxPayloadBytes <= 0 {
		bad("MaxPayloadBytes %d must be positive", c.MaxPayloadBytes)
	}
	if c.DialTimeout <= 0 {
		bad("DialTimeout %v must be positive", c.DialTimeout)
	}
	if err := amqpconn.CheckConfig(c.AMQP); err != nil {
		bad("%v", err)
	}
	return errors.Join(errs...)
}

// checkExchange reports what is wrong with the exchange e for topic; from
// names where it came from (Exchanges or ExchangeFor).
func checkExchange(topic string, e Exchange, from string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch {
	case topic == "":
		bad("%s has an empty topic: topics must be non-empty", from)
	case e.Name == "":
		bad("%s[%q].Name is empty: the default exchange cannot be declared; name an exchange", from, topic)
	case len(e.Name) > amqpconn.MaxShortString:
		bad("%s[%q].Name is %d bytes, over the AMQP limit of %d", from, topic, len(e.Name), amqpconn.MaxShortString)
	case strings.HasPrefix(e.Name, "amq.") && !e.Passive:
		bad("%s[%q].Name %q uses the reserved amq. prefix: set Passive: true to use a built-in exchange", from, topic, e.Name)
	}
	switch e.Kind {
	case KindTopic, KindDirect, KindFanout, KindHeaders:
	default:
		bad("%s[%q].Kind %q is not one of topic, direct, fanout, headers", from, topic, e.Kind)
	}
	return errors.Join(errs...)
}

// exchangeFor resolves topic: Exchanges first, then ExchangeFor. The error
// says what to do and names the known topics; it wraps ErrUnknownTopic
// when neither maps the topic.
func (c *Config) exchangeFor(topic string) (e Exchange, err error) {
	if e, ok := c.Exchanges[topic]; ok {
		return e, nil
	}
	if c.ExchangeFor == nil {
		return Exchange{}, fmt.Errorf("%w %q: configured topics are %s (add it to Config.Exchanges, or map generated topics with Config.ExchangeFor)", ErrUnknownTopic, topic, c.knownTopics())
	}
	defer recoverUser("Config.ExchangeFor", &err)
	e, ok := c.ExchangeFor(topic)
	if !ok {
		return Exchange{}, fmt.Errorf("%w %q: not in Config.Exchanges %s and Config.ExchangeFor does not map it", ErrUnknownTopic, topic, c.knownTopics())
	}
	if e.Kind == "" {
		e.Kind = KindTopic
	}
	if err := checkExchange(topic, e, "ExchangeFor"); err != nil {
		return Exchange{}, fmt.Errorf("topic %q: %w", topic, err)
	}
	return e, nil
}

func (c *Config) knownTopics() string {
	return "[" + strings.Join(sortedKeys(c.Exchanges), ", ") + "]"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// clone copies the maps and slices of c (and of its AMQP config), so the
// caller may change its Config after handing it over.
func (c Config) clone() Config {
	c.URLs = slices.Clone(c.URLs)
	c.Exchanges = maps.Clone(c.Exchanges)
	c.AMQP.SASL = slices.Clone(c.AMQP.SASL)
	c.AMQP.Properties = cloneTable(c.AMQP.Properties)
	if c.AMQP.TLSClientConfig != nil {
		c.AMQP.TLSClientConfig = c.AMQP.TLSClientConfig.Clone()
	}
	return c
}

func cloneTable(t amqp.Table) amqp.Table {
	if t == nil {
		return nil
	}
	out := make(amqp.Table, len(t))
	for k, v := range t {
		if nested, ok := v.(amqp.Table); ok {
			v = cloneTable(nested)
		}
		out[k] = v
	}
	return out
}
