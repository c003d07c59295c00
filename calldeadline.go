package durablews

import (
	"sync/atomic"
	"time"
)

// callDeadline is the Config.ConfirmTimeout of one Publish call. C
// receives when it runs out. A write of the call still in progress then
// is cut by dropping its connection's socket: amqp091-go cannot cancel a
// write, and one to a broker that stopped reading (a frozen node, a
// connection blocked by a resource alarm) would otherwise block the call,
// and Close, for as long as the broker does.
type callDeadline struct {
	timer   *time.Timer // runs fire
	C       chan time.Time
	fired   atomic.Bool
	writing atomic.Pointer[connection] // the connection the call is writing to, if any
}

// stalledWriteReason is why a connection was dropped by a call's deadline.
const stalledWriteReason = "writing to the broker stalled until Config.ConfirmTimeout ran out: the broker stopped reading from the connection (a frozen node, or a memory or disk alarm), so the publisher dropped the connection"

// newCallDeadline returns a deadline running for d.
func newCallDeadline(d time.Duration) *callDeadline {
	cd := &callDeadline{C: make(chan time.Time, 1)}
	cd.timer = time.AfterFunc(d, cd.fire)
	return cd
}

func (cd *callDeadline) fire() {
	cd.fired.Store(true)
	select {
	case cd.C <- time.Now():
	default:
	}
	if c := cd.writing.Load(); c != nil {
		c.drop(stalledWriteReason)
	}
}

// reset restarts a stopped deadline for d.
func (cd *callDeadline) reset(d time.Duration) {
	cd.fired.Store(false)
	cd.timer.Reset(d)
}

// stop stops the deadline and reports whether it had not fired, so C is
// empty and it can be reused.
func (cd *callDeadline) stop() bool { return cd.timer.Stop() }

// beginWrite marks the start of a write to c under the deadline: if the
// deadline runs out before endWrite, c's socket is dropped, which ends the
// write. It returns false, and marks nothing, when the deadline already
// ran out.
func (cd *callDeadline) beginWrite(c *connection) bool {
	cd.writing.Store(c)
	// fire sets fired before it reads writing: it sees c, or we see fired.
	if cd.fired.Load() {
		cd.writing.Store(nil)
		return false
	}
	c.writers.Add(1)
	return true
}

// endWrite marks the end of the write begun by beginWrite.
func (cd *callDeadline) endWrite(c *connection) {
	cd.writing.Store(nil)
	c.writers.Add(-1)
}
