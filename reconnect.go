package durablews

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
)

// keepConnected replaces a lost connection with a new one, with back-off, rotating
// through the URLs, until Close.
func (p *Publisher) keepConnected(urlIdx int) {
	defer close(p.runDone)
	for {
		c, _ := p.current()
		select {
		case <-c.lost:
		case <-p.closing:
			return
		}
		p.logger.Error("Connection to broker lost; reconnecting", errors.New(c.lostReason()), watermill.LogFields{"url": amqpconn.RedactURL(c.url)})
		_ = c.close()
		wait := p.reconnectWait(0)
		for attempt := 0; ; attempt++ {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-p.closing:
				t.Stop()
				return
			}
			urlIdx = (urlIdx + 1) % len(p.cfg.URLs)
			u := p.cfg.URLs[urlIdx]
			next, err := p.connect(p.ctx, u)
			if err != nil {
				wait = p.reconnectWait(attempt + 1)
				p.logger.Error("Reconnect failed", err, watermill.LogFields{"attempt": attempt + 1, "retry_in": wait.String()})
				continue
			}
			p.mu.Lock()
			p.conn = next
			close(p.ready)
			p.ready = make(chan struct{})
			p.mu.Unlock()
			p.logger.Info("Reconnected to broker", watermill.LogFields{"url": amqpconn.RedactURL(u), "attempts": attempt + 1})
			p.cfg.Observer.Reconnected(amqpconn.RedactURL(u))
			break
		}
	}
}

// reconnectWait is the wait before reconnect attempt n (0-based):
// Config.Reconnect's delay with jitter (half to all of it), so a fleet
// does not reconnect in lockstep.
func (p *Publisher) reconnectWait(n int) time.Duration {
	d := p.cfg.Reconnect.Delay(n)
	return d/2 + rand.N(d/2+1)
}

// connect dials u and runs Config.OnConnect on the new connection; a
// connection that fails it is closed.
func (p *Publisher) connect(ctx context.Context, u string) (*connection, error) {
	c, err := dialConnection(&p.cfg, u, p.logger)
	if err != nil || p.cfg.OnConnect == nil {
		return c, err
	}
	if err := p.onConnect(ctx, c.amqpConn); err != nil {
		_ = c.close()
		return nil, fmt.Errorf("%s: %w", amqpconn.RedactURL(u), err)
	}
	return c, nil
}

func (p *Publisher) onConnect(ctx context.Context, conn *amqp.Connection) (err error) {
	defer recoverUser("Config.OnConnect", &err)
	if err := p.cfg.OnConnect(ctx, conn); err != nil {
		return fmt.Errorf("Config.OnConnect: %w", err)
	}
	return nil
}
