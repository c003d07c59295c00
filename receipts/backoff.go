package receipts

import (
	"math/rand/v2"
	"time"
)

// Reconnect back-off of the Subscriber: the wait before the next attempt
// to reconnect (or to consume again on a connection that is up) starts at
// backoffInitial and doubles after each failed attempt, up to backoffMax.
const (
	backoffInitial = 100 * time.Millisecond
	backoffMax     = 5 * time.Second
)

// backoff holds the delay of the next reconnect attempt. Each wait is
// jittered to half to all of that delay, so the instances of a service
// cut off together do not reconnect in lockstep; no wait exceeds
// backoffMax. The zero value starts at backoffInitial. Not safe for
// concurrent use: each loop has its own.
type backoff struct {
	delay time.Duration // the delay of the next wait before jitter; 0 means backoffInitial
}

// next returns the wait before the next attempt and doubles the delay of
// the one after it.
func (b *backoff) next() time.Duration {
	if b.delay == 0 {
		b.delay = backoffInitial
	}
	d := b.delay
	b.delay = min(2*b.delay, backoffMax)
	return d/2 + rand.N(d/2+1)
}

// reset makes the next wait backoffInitial again (after a success).
func (b *backoff) reset() { b.delay = 0 }

// sleep waits b.next(), or less when a or b is closed first (a nil
// channel is never closed); it reports whether the whole wait passed.
func (b *backoff) sleep(a, c <-chan struct{}) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-a:
		return false
	case <-c:
		return false
	}
}
