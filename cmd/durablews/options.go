package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/amqpconn"
)

// envPrefix is prepended to the upper-cased flag name to get the
// environment variable: -management-url is DURABLEWS_MANAGEMENT_URL.
const envPrefix = "DURABLEWS_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Tab-queue policy defaults. expires matches the browser client's default
// x-expires (web/defaults.js DEFAULTS.subscribe.expiresMs, 1 h): RabbitMQ applies the smaller of policy
// and argument, so a shorter policy would cut the client's promise.
// drop-head rather than reject-publish: one full queue nacks a message that
// other tabs' queues already took, so the publisher's retry duplicates it
// there (README "Guarantees").
const (
	defaultPolicyName  = "durablews-tab-queues"
	defaultTabPattern  = "^tab-"
	defaultTabExpires  = time.Hour
	defaultTabMaxLen   = 10000
	defaultTabOverflow = "drop-head"
	defaultExchanges   = "events"
	defaultTimeout     = 10 * time.Second
)

// options are the flags shared by all commands, named after the fields of
// durablews.Config where there is one (URLs -> -amqp-url, Exchanges -> -exchanges).
type options struct {
	urls          stringList // -amqp-url: broker URL(s), comma-separated; Config.URLs
	exchanges     string     // -exchanges: name[:kind],...; Config.Exchanges
	managementURL string
	managementUsr string
	managementPwd string
	webSTOMPURL   stringList

	policyName     string
	policyPriority int
	tabPattern     string
	tabExpires     time.Duration
	tabMaxLength   int
	tabOverflow    string

	timeout  time.Duration
	logLevel string

	// Derived by finish.
	exchangeList []durablews.Exchange
	uri          amqp.URI // of urls[0]
	vhost        string
	mgmt         string // management URL without trailing slash
	mgmtUser     string
	mgmtPassword string
	ws           string   // first of wsList
	wsList       []string // every Web-STOMP URL browsers may use (one per node, or a load balancer)
	logger       watermill.LoggerAdapter
}

// stringList is a comma-separated, repeatable flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// newFlagSet returns a FlagSet for command with the shared flags registered.
// The caller adds its own flags and then calls parse.
func newFlagSet(command, argsUsage, about string, stderr io.Writer) (*flag.FlagSet, *options) {
	o := &options{}
	fs := flag.NewFlagSet("durablews "+command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: durablews %s [flags]%s\n\n%s\n\nFlags (each also from the environment variable shown):\n", command, argsUsage, about)
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(stderr, "  -%s %s\t[%s]\n    \t%s", f.Name, name, envName(f.Name), strings.ReplaceAll(usage, "\n", "\n    \t"))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				fmt.Fprintf(stderr, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(stderr)
		})
	}
	fs.Var(&o.urls, "amqp-url", "AMQP URL of the broker, `amqp://user:pass@host:5672/vhost`; comma-separated or repeated for\nseveral nodes (Config.URLs). Default amqp://guest:guest@127.0.0.1:5672/")
	fs.StringVar(&o.exchanges, "exchanges", defaultExchanges, "exchanges as `name[:kind],...`, kind topic (default), direct, fanout or headers\n(Config.Exchanges; the topic is the exchange name)")
	fs.StringVar(&o.managementURL, "management-url", "", "management HTTP API, e.g. `http://host:15672` (default: the AMQP host, port 15672; https and 15671 for amqps)")
	fs.StringVar(&o.managementUsr, "management-user", "", "management API user (default: the user of -amqp-url); setup needs the policymaker tag, doctor monitoring (administrator has both)")
	fs.StringVar(&o.managementPwd, "management-password", "", "management API password (default: the password of -amqp-url)")
	fs.Var(&o.webSTOMPURL, "web-stomp-url", "Web-STOMP endpoint browsers use, e.g. `ws://host:15674/ws`; comma-separated or repeated for\nseveral nodes (default: each -amqp-url host, port 15674, path /ws)")
	fs.StringVar(&o.policyName, "policy-name", defaultPolicyName, "name of the tab-queue policy")
	fs.IntVar(&o.policyPriority, "policy-priority", 0, "priority of the tab-queue policy (the highest-priority matching policy is the only one applied)")
	fs.StringVar(&o.tabPattern, "tab-queue-pattern", defaultTabPattern, "regular expression matching tab queue names (the browser client names them tab-<tabId>-<name>)")
	fs.DurationVar(&o.tabExpires, "tab-queue-expires", defaultTabExpires, "policy expires: delete a tab queue unused this long (0: not set). RabbitMQ applies the smaller of\nthis and the client's x-expires")
	fs.IntVar(&o.tabMaxLength, "tab-queue-max-length", defaultTabMaxLen, "policy max-length: most ready messages a tab queue keeps (0: not set)")
	fs.StringVar(&o.tabOverflow, "tab-queue-overflow", defaultTabOverflow, "policy overflow when max-length is reached: drop-head, reject-publish or reject-publish-dlx (empty: not set)")
	fs.DurationVar(&o.timeout, "timeout", defaultTimeout, "timeout of each broker or HTTP operation")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level of the Watermill logger on stderr: error, info, debug or trace")
	return fs, o
}

// parse parses args, then fills every flag not given on the command line
// from its environment variable, then derives and checks the shared values.
func parse(fs *flag.FlagSet, o *options, args []string, env lookupEnv, stderr io.Writer) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v, ok := env(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment variable %s=%q: %v", envName(f.Name), v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return o.finish(stderr)
}

func (o *options) finish(stderr io.Writer) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if len(o.urls) == 0 {
		o.urls = stringList{"amqp://guest:guest@127.0.0.1:5672/"}
	}
	for i, u := range o.urls {
		uri, err := amqp.ParseURI(u)
		if err != nil {
			bad("-amqp-url (DURABLEWS_AMQP_URL) %q: %v (want amqp://user:pass@host:5672/vhost)", amqpconn.RedactURL(u), err)
			continue
		}
		if i == 0 {
			o.uri = uri
		}
	}
	o.vhost = o.uri.Vhost
	if o.vhost == "" {
		o.vhost = "/"
	}

	exs, err := parseExchanges(o.exchanges)
	if err != nil {
		bad("-exchanges (DURABLEWS_EXCHANGES): %v", err)
	}
	o.exchangeList = exs

	host := o.uri.Host
	if host == "" {
		host = "127.0.0.1"
	}
	o.mgmt = strings.TrimSuffix(o.managementURL, "/")
	if o.mgmt == "" {
		scheme, port := "http", "15672"
		if o.uri.Scheme == "amqps" {
			scheme, port = "https", "15671"
		}
		o.mgmt = scheme + "://" + net.JoinHostPort(host, port)
	} else if u, err := url.Parse(o.mgmt); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("-management-url (DURABLEWS_MANAGEMENT_URL) %q: want http(s)://host:port", o.managementURL)
	}
	o.mgmtUser, o.mgmtPassword = o.managementUsr, o.managementPwd
	if o.mgmtUser == "" {
		o.mgmtUser = o.uri.Username
	}
	if o.mgmtPassword == "" {
		o.mgmtPassword = o.uri.Password
	}
	o.wsList = o.webSTOMPURL
	if len(o.wsList) == 0 {
		scheme, port := "ws", "15674"
		if o.uri.Scheme == "amqps" {
			scheme, port = "wss", "15673"
		}
		for _, u := range o.urls {
			h := "127.0.0.1"
			if uri, err := amqp.ParseURI(u); err == nil && uri.Host != "" {
				h = uri.Host
			}
			if ws := scheme + "://" + net.JoinHostPort(h, port) + "/ws"; !slices.Contains(o.wsList, ws) {
				o.wsList = append(o.wsList, ws)
			}
		}
	}
	for _, ws := range o.webSTOMPURL {
		if u, err := url.Parse(ws); err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			bad("-web-stomp-url (DURABLEWS_WEB_STOMP_URL) %q: want ws(s)://host:port/path", ws)
		}
	}
	if len(o.wsList) > 0 {
		o.ws = o.wsList[0]
	}

	if o.policyName == "" {
		bad("-policy-name (DURABLEWS_POLICY_NAME) is empty")
	}
	if _, err := regexp.Compile(o.tabPattern); err != nil || o.tabPattern == "" {
		bad("-tab-queue-pattern (DURABLEWS_TAB_QUEUE_PATTERN) %q is not a usable regular expression", o.tabPattern)
	}
	if o.tabExpires < 0 || (o.tabExpires > 0 && o.tabExpires < time.Millisecond) {
		bad("-tab-queue-expires (DURABLEWS_TAB_QUEUE_EXPIRES) %v: want 0 (not set) or at least 1ms", o.tabExpires)
	}
	if o.tabMaxLength < 0 {
		bad("-tab-queue-max-length (DURABLEWS_TAB_QUEUE_MAX_LENGTH) %d must not be negative", o.tabMaxLength)
	}
	switch o.tabOverflow {
	case "", "drop-head", "reject-publish", "reject-publish-dlx":
	default:
		bad("-tab-queue-overflow (DURABLEWS_TAB_QUEUE_OVERFLOW) %q: want drop-head, reject-publish or reject-publish-dlx", o.tabOverflow)
	}
	if o.timeout <= 0 {
		bad("-timeout (DURABLEWS_TIMEOUT) %v must be positive", o.timeout)
	}
	level, ok := logLevels[o.logLevel]
	if !ok {
		bad("-log-level (DURABLEWS_LOG_LEVEL) %q: want error, info, debug or trace", o.logLevel)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	o.logger = newLogger(stderr, level)
	return nil
}

var logLevels = map[string]slog.Level{
	"error": slog.LevelError,
	"info":  slog.LevelInfo,
	"debug": slog.LevelDebug,
	"trace": watermill.LevelTrace,
}

// newLogger is the one Watermill logger of the CLI: the publisher's, and
// the CLI's own connection events (at info).
func newLogger(w io.Writer, level slog.Level) watermill.LoggerAdapter {
	h := slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.LevelKey && a.Value.Any() == watermill.LevelTrace {
				a.Value = slog.StringValue("TRACE")
			}
			return a
		},
	})
	return watermill.NewSlogLogger(slog.New(h))
}

// parseExchanges parses "events,alerts:fanout".
func parseExchanges(s string) ([]durablews.Exchange, error) {
	var out []durablews.Exchange
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, kind, _ := strings.Cut(part, ":")
		if kind == "" {
			kind = durablews.KindTopic
		}
		switch kind {
		case durablews.KindTopic, durablews.KindDirect, durablews.KindFanout, durablews.KindHeaders:
		default:
			return nil, fmt.Errorf("%q: kind %q is not one of topic, direct, fanout, headers", part, kind)
		}
		if name == "" {
			return nil, fmt.Errorf("%q: empty exchange name", part)
		}
		if seen[name] {
			return nil, fmt.Errorf("exchange %q listed twice", name)
		}
		seen[name] = true
		out = append(out, durablews.Exchange{Name: name, Kind: kind})
	}
	if len(out) == 0 {
		return nil, errors.New("no exchange given (e.g. -exchanges events)")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// policyDefinition is the tab-queue policy's definition as the
// management API returns it (JSON numbers as float64).
func (o *options) policyDefinition() map[string]any {
	def := map[string]any{}
	if o.tabExpires > 0 {
		def["expires"] = float64(o.tabExpires.Milliseconds())
	}
	if o.tabMaxLength > 0 {
		def["max-length"] = float64(o.tabMaxLength)
	}
	if o.tabOverflow != "" {
		def["overflow"] = o.tabOverflow
	}
	return def
}

// formatDef prints a policy definition with sorted keys: {expires: 3600000, ...}.
func formatDef(def map[string]any) string {
	keys := make([]string, 0, len(def))
	for k := range def {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + formatValue(def[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

func formatValue(v any) string {
	switch x := v.(type) {
	case float64:
		if x == float64(int64(x)) {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		return x
	default:
		return fmt.Sprint(x)
	}
}
