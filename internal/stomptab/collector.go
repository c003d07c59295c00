package stomptab

import (
	"context"
	"fmt"
	"sync"
)

// Delivery is one received MESSAGE frame, duplicate or not.
type Delivery struct {
	ID          string
	Redelivered bool
	Duplicate   bool // ID had been seen before (on any connection)
}

// Stats summarises what a Collector saw.
type Stats struct {
	Deliveries  int // MESSAGE frames received
	Unique      int // distinct message IDs
	Duplicates  int // deliveries whose id had been seen already
	Redelivered int // deliveries flagged redelivered:true
}

// Collector records deliveries the way the browser client handles them:
// it deduplicates on Message.ID (amqp-message-id, else
// _watermill_message_uuid; the ack id changes on every delivery, so it is
// useless for that), keeps first-arrival order and
// remembers redelivered flags. One Collector may span several
// connections/subscriptions of the same logical tab, like the page's
// memory survives a reconnect. Messages without an ID are always
// treated as new. Safe for concurrent use.
type Collector struct {
	mu    sync.Mutex
	seen  map[string]struct{}
	msgs  []Message
	log   []Delivery
	stats Stats
}

// NewCollector returns an empty Collector.
func NewCollector() *Collector { return &Collector{seen: make(map[string]struct{})} }

// Add records m and reports whether it was new.
func (c *Collector) Add(m Message) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.Deliveries++
	if m.Redelivered {
		c.stats.Redelivered++
	}
	dup := false
	if m.ID != "" {
		_, dup = c.seen[m.ID]
		c.seen[m.ID] = struct{}{}
	}
	c.log = append(c.log, Delivery{ID: m.ID, Redelivered: m.Redelivered, Duplicate: dup})
	if dup {
		c.stats.Duplicates++
		return false
	}
	c.stats.Unique++
	c.msgs = append(c.msgs, m)
	return true
}

// Len is the number of distinct messages seen.
func (c *Collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

// Messages returns the distinct messages in first-arrival order.
func (c *Collector) Messages() []Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Message(nil), c.msgs...)
}

// IDs returns the distinct message IDs in first-arrival order.
func (c *Collector) IDs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, len(c.msgs))
	for i, m := range c.msgs {
		ids[i] = m.ID
	}
	return ids
}

// Log returns every delivery in arrival order, duplicates included.
func (c *Collector) Log() []Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Delivery(nil), c.log...)
}

// Stats returns the counters.
func (c *Collector) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Receive reads from sub until the Collector holds at least n distinct
// messages (counting those collected earlier). With ack, every delivery
// is acked as it is recorded — duplicates too, as the browser does, so
// they do not come back. It returns the first error from Next or Ack,
// with a note of how far it got.
func (c *Collector) Receive(ctx context.Context, sub *Subscription, n int, ack bool) error {
	for c.Len() < n {
		m, err := sub.Next(ctx)
		if err != nil {
			return fmt.Errorf("stomptab: received %d of %d distinct messages: %w", c.Len(), n, err)
		}
		c.Add(m)
		if ack {
			if err := sub.Ack(m); err != nil {
				return fmt.Errorf("stomptab: ack %q: %w", m.ID, err)
			}
		}
	}
	return nil
}

// ReceiveN is NewCollector followed by Receive.
func ReceiveN(ctx context.Context, sub *Subscription, n int, ack bool) (*Collector, error) {
	c := NewCollector()
	return c, c.Receive(ctx, sub, n, ack)
}
