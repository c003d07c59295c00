package receipts

import (
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/durablews/durablews/internal/defaults"
)

// Defaults applied by NewTracker to zero TrackerConfig fields.
const (
	DefaultRetention  = 10 * time.Minute
	DefaultMaxEntries = 100_000
)

// TrackerConfig configures a Tracker. Zero fields get defaults in
// NewTracker.
type TrackerConfig struct {
	// Subscriber the Tracker consumes receipt messages from (usually a
	// *Subscriber), acking each once recorded. nil: the Tracker consumes
	// nothing by itself; feed it with Handle (a Router handler) or Add.
	// The Tracker does not close it.
	Subscriber message.Subscriber

	// Topic passed to Subscriber.Subscribe: for a *Subscriber, the
	// binding key of its queue. "" means DefaultBindingKey ("#").
	Topic string

	// Retention is how long a receipt is kept after it arrived: for
	// WaitTabs and WaitUser calls made after it arrived, and for dropping
	// its duplicates. A duplicate arriving later is taken as new. Zero
	// means DefaultRetention (10 minutes).
	Retention time.Duration

	// MaxEntries caps the receipts kept, whatever their age; past it the
	// oldest are dropped first. Zero means DefaultMaxEntries. Pending
	// WaitTabs, WaitUser, Expect and ExpectUser calls are not counted:
	// each holds memory until it returns or fires.
	MaxEntries int

	// OnReceipt, when set, is called once for each new receipt (not for
	// duplicates), in arrival order, in the goroutine that delivered it
	// (the Tracker's consumer, or the caller of Handle or Add). A slow
	// OnReceipt slows the consumption of receipts; a panic in it is
	// logged and recovered. nil: not called.
	OnReceipt func(Receipt)

	// Now is the clock that ages receipts. nil means time.Now. Expect's
	// deadlines always run on real time.
	Now func() time.Time
}

func (c *TrackerConfig) setDefaults() {
	defaults.Set(&c.Topic, DefaultBindingKey)
	defaults.Set(&c.Retention, DefaultRetention)
	defaults.Set(&c.MaxEntries, DefaultMaxEntries)
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Validate reports an invalid field. NewTracker calls it after filling
// defaults.
func (c TrackerConfig) Validate() error {
	switch {
	case c.Retention < 0:
		return fmt.Errorf("receipts: invalid tracker config: Retention %v must not be negative (zero means %v)", c.Retention, DefaultRetention)
	case c.MaxEntries < 0:
		return fmt.Errorf("receipts: invalid tracker config: MaxEntries %d must not be negative (zero means %d)", c.MaxEntries, DefaultMaxEntries)
	}
	return nil
}
