// Command example is durablews's demo: a page that shows a customer's live
// events, delivered from Go through RabbitMQ Web-STOMP with a delivery
// guarantee. Run it from the repository root with `make demo`, or
//
//	go run ./example [-addr 127.0.0.1:8080] [-amqp URL[,URL...]] [-ws URL[,URL...]] [-exchange NAME] [-web-dir web]
//	                 [-signing-key FILE] [-key-id ID] [-management URL] [-trusted]
//
// then open the printed URL. By default pages use tab sessions (no broker
// credential in any page; the broker must be configured by
// scripts/rabbitmq-tab-sessions.sh). -trusted hands guest/guest to every page
// instead: only for brokers not configured for tab sessions, on a trusted
// network. Several comma-separated -amqp and -ws URLs, one per cluster node,
// make the publisher and the page fail over between nodes (`make
// demo-cluster`). See example/README.md.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"

	"github.com/durablews/durablews/tabsession"
)

// defaultSigningKeyPath is where scripts/rabbitmq-tab-sessions.sh keeps the
// key (`bash scripts/rabbitmq-tab-sessions.sh key-path`).
const defaultSigningKeyPath = "/var/lib/durablews/dev-signing-key"

func main() {
	d := defaultAppConfig()
	cfg := d
	flag.StringVar(&cfg.Addr, "addr", d.Addr, "HTTP listen address")
	flag.StringVar(&cfg.AMQPURL, "amqp", d.AMQPURL, "RabbitMQ AMQP URL the Go side publishes to, or a comma-separated list of one per cluster node")
	flag.StringVar(&cfg.WebSTOMPURL, "ws", d.WebSTOMPURL, "RabbitMQ Web-STOMP URL the page connects to, or a comma-separated list of every node's")
	flag.StringVar(&cfg.Exchange, "exchange", d.Exchange, "durable topic exchange for the events")
	flag.StringVar(&cfg.Stream, "stream", d.Stream, "broadcast stream of announcements (declared at startup, bound to the exchange with key "+announcementsKey+")")
	flag.StringVar(&cfg.WebDir, "web-dir", d.WebDir, "directory of the browser client (durablews.js, node_modules)")
	keyPath := flag.String("signing-key", defaultSigningKeyPath, "file of the broker's tab-token signing key (written by scripts/rabbitmq-tab-sessions.sh)")
	flag.StringVar(&cfg.KeyID, "key-id", d.KeyID, "kid of the signing key in the broker's config (DURABLEWS_TABS_KEY_ID)")
	flag.StringVar(&cfg.ManagementURL, "management", "", "optional management API URL with credentials, to remove revoked bindings at renewal")
	flag.BoolVar(&cfg.Trusted, "trusted", false, "TRUSTED NETWORKS ONLY: give every page guest/guest and let it declare and bind its own queue (for brokers not configured for tab sessions)")
	flag.BoolVar(&cfg.QuorumQueues, "quorum", false, "tab-session queues are quorum queues: they survive the loss of a cluster node (for a cluster's URLs)")
	flag.DurationVar(&cfg.FallbackAfter, "fallback-after", d.FallbackAfter, "an event no tab of its customer handled within this (no delivery receipt) is listed as a fallback (GET /api/fallbacks): where a real service would send an e-mail")
	verbose := flag.Bool("v", false, "debug logging")
	flag.Parse()
	cfg.Logger = watermill.NewStdLogger(*verbose, false)
	if !cfg.Trusted {
		key, err := tabsession.LoadSigningKey(*keyPath)
		if err != nil {
			fmt.Fprintf(os.Stderr, "demo: %v\n  configure the broker for tab sessions first: bash scripts/rabbitmq-tab-sessions.sh (or `make demo`),\n  or pass -signing-key, or -trusted on a trusted network\n", err)
			os.Exit(1)
		}
		cfg.SigningKey = key
	}

	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(cfg appConfig) error {
	for _, u := range splitURLs(cfg.WebSTOMPURL) {
		warnIfUnreachable(u)
	}
	a, err := newApp(cfg)
	if err != nil {
		return err
	}
	if err := a.Start(); err != nil {
		_ = a.Close()
		return err
	}
	fmt.Printf("\ndurablews demo: open %s/?customer=42\n", a.URL())
	fmt.Printf("  events: POST %s/api/events (customer, count, event) -> exchange %q, routing key customer.<id>.<event>\n", a.URL(), cfg.Exchange)
	if cfg.Trusted {
		fmt.Printf("  TRUSTED MODE: every page gets %s/%s and binds its own queue; never expose this\n", cfg.BrowserLogin, cfg.BrowserPasscode)
	} else {
		fmt.Printf("  tab sessions: pages log in as ?customer=<id> (demo cookie) and get a read-only token from %s\n", tabSessionPath)
	}
	if ws := splitURLs(cfg.WebSTOMPURL); len(ws) > 1 {
		fmt.Printf("  the page connects to one of %s (a random one first, the next when it fails); Ctrl-C stops\n\n", strings.Join(ws, " "))
	} else {
		fmt.Printf("  the page connects to %s; Ctrl-C stops\n\n", cfg.WebSTOMPURL)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	signal.Stop(sig)
	fmt.Println("demo: shutting down")
	return a.Close()
}

// warnIfUnreachable only warns: the page reconnects by itself once Web-STOMP is up.
func warnIfUnreachable(wsURL string) {
	u, err := url.Parse(wsURL)
	if err != nil || u.Host == "" {
		return
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), map[string]string{"wss": "443"}[u.Scheme]+map[string]string{"ws": "80"}[u.Scheme])
	}
	c, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: warning: Web-STOMP at %s is not reachable (%v); run `make broker` (or `make cluster` for the cluster's URLs)\n", wsURL, err)
		return
	}
	_ = c.Close()
}
