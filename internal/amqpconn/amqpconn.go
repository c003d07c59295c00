// Package amqpconn holds what the publisher (package durablews) and the tab
// sessions (package tabsession) both need from an AMQP connection: dialling
// with a connection name the broker shows, checking and redacting broker
// URLs, and the AMQP short-string limit. Neither package depends on the
// other's insides; both depend on this one.
package amqpconn

import (
	"errors"
	"fmt"
	"maps"
	"net/url"

	amqp "github.com/rabbitmq/amqp091-go"
)

// MaxShortString is the AMQP 0-9-1 limit for exchange and queue names,
// routing keys and header names, in bytes.
const MaxShortString = 255

// Dial connects to url with c, naming the connection name (client property
// connection_name) unless c already names it, so the broker's connection
// list shows who is who. The error carries the URL without its password.
func Dial(url string, c amqp.Config, name string) (*amqp.Connection, error) {
	conn, err := amqp.DialConfig(url, WithConnectionName(c, name))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", RedactURL(url), err)
	}
	return conn, nil
}

// DialAny dials urls in turn, beginning at urls[start%len(urls)], and
// returns the first connection that opens with the index of its URL. When
// none opens, the error lists every URL's failure (passwords redacted).
func DialAny(urls []string, start int, c amqp.Config, name string) (*amqp.Connection, int, error) {
	errs := make([]error, 0, len(urls))
	for k := range urls {
		i := (start + k) % len(urls)
		conn, err := Dial(urls[i], c, name)
		if err == nil {
			return conn, i, nil
		}
		errs = append(errs, err)
	}
	return nil, -1, errors.Join(errs...)
}

// WithConnectionName returns c with the client property connection_name
// set to name unless c already has one. The caller's Properties table is
// copied, not changed.
func WithConnectionName(c amqp.Config, name string) amqp.Config {
	if _, ok := c.Properties["connection_name"]; ok {
		return c
	}
	if c.Properties == nil {
		c.Properties = amqp.NewConnectionProperties()
	} else {
		c.Properties = maps.Clone(c.Properties)
	}
	c.Properties.SetClientConnectionName(name)
	return c
}

// CheckConfig reports a setting of c that durablews cannot work with:
// amqp091-go's automatic recovery (Config.Recovery), which would compete
// with the publisher's and the tab sessions' own reconnects.
func CheckConfig(c amqp.Config) error {
	if c.Recovery != nil {
		return errors.New("AMQP.Recovery is set: durablews reconnects (and republishes) itself, and amqp091-go's recovery would compete with it; remove it")
	}
	return nil
}

// ValidateURL checks that raw is an amqp:// or amqps:// URL with a host.
func ValidateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return fmt.Errorf("scheme must be amqp or amqps, not %q", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	return nil
}

// RedactURL hides the password so URLs can go into errors and logs.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}
