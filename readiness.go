package durablews

import (
	"context"
	"fmt"

	"github.com/durablews/durablews/internal/amqpconn"
)

// Connected reports whether the publisher has a live connection to a
// broker now. It does no I/O, so it is cheap enough for every health
// probe. It is false while the publisher reconnects and after Close.
func (p *Publisher) Connected() bool {
	if p.isClosed() {
		return false
	}
	c, _ := p.current()
	return !c.dead()
}

// Ping returns nil when the publisher is connected to a broker, waiting
// for a reconnect in progress until ctx is done. Otherwise it returns
// ErrPublisherClosed after Close, or an error naming the broker URL and
// why the connection was lost, wrapping ctx's error. Like Connected it
// sends nothing to the broker: a dead TCP connection is noticed by AMQP
// heartbeats (Config.AMQP.Heartbeat, 10 s by default).
//
// Use it for a Kubernetes readiness probe, with a timeout below the
// probe's timeoutSeconds: a pod that cannot publish stops getting traffic
// and gets it back when the publisher has reconnected by itself. Do not
// use it for a liveness probe: restarting pods does not bring a broker
// back, and a restarted pod only has to connect again.
func (p *Publisher) Ping(ctx context.Context) error {
	for {
		if p.isClosed() {
			return ErrPublisherClosed
		}
		c, ready := p.current()
		if !c.dead() {
			return nil
		}
		select {
		case <-ready:
		case <-p.closing:
		case <-ctx.Done():
			return fmt.Errorf("durablews: not connected to the broker: reconnecting since the connection to %s was lost (%s): %w",
				amqpconn.RedactURL(c.url), c.lostReason(), ctx.Err())
		}
	}
}

func (p *Publisher) isClosed() bool {
	p.closedMu.RLock()
	defer p.closedMu.RUnlock()
	return p.closed
}
