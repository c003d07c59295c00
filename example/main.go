// Command example is durablews's demo: a page that shows a customer's live
// events, delivered from Go through RabbitMQ Web-STOMP with a delivery
// guarantee. Run it from the repository root with `make demo`, or
//
//	go run ./example [-addr 127.0.0.1:8080] [-amqp URL] [-ws URL] [-exchange NAME] [-web-dir web]
//
// then open the printed URL. See example/README.md.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

func main() {
	d := defaultAppConfig()
	cfg := d
	flag.StringVar(&cfg.Addr, "addr", d.Addr, "HTTP listen address")
	flag.StringVar(&cfg.AMQPURL, "amqp", d.AMQPURL, "RabbitMQ AMQP URL the Go side publishes to")
	flag.StringVar(&cfg.WebSTOMPURL, "ws", d.WebSTOMPURL, "RabbitMQ Web-STOMP URL the page connects to")
	flag.StringVar(&cfg.Exchange, "exchange", d.Exchange, "durable topic exchange for the events")
	flag.StringVar(&cfg.WebDir, "web-dir", d.WebDir, "directory of the browser client (durablews.js, node_modules)")
	verbose := flag.Bool("v", false, "debug logging")
	flag.Parse()
	cfg.Logger = watermill.NewStdLogger(*verbose, false)

	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(cfg appConfig) error {
	warnIfUnreachable(cfg.WebSTOMPURL)
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
	fmt.Printf("  the page connects to %s; Ctrl-C stops\n\n", cfg.WebSTOMPURL)

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
		fmt.Fprintf(os.Stderr, "demo: warning: Web-STOMP at %s is not reachable (%v); run `make broker`\n", wsURL, err)
		return
	}
	_ = c.Close()
}
