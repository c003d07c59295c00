package receipts

import (
	"slices"
	"time"
)

// entry is what a Tracker keeps of one message id: its receipts in
// arrival order (one per tab) and the calls waiting for them.
type entry struct {
	receipts []Receipt
	tabs     map[string]struct{}
	waiters  []*waiter
	expects  []*expectation
}

func newEntry() *entry { return &entry{tabs: map[string]struct{}{}} }

// idle: nothing left to keep the entry for.
func (e *entry) idle() bool {
	return len(e.receipts) == 0 && len(e.waiters) == 0 && len(e.expects) == 0
}

// userReceipt returns the first receipt of user, if any.
func (e *entry) userReceipt(user string) (Receipt, bool) {
	for _, r := range e.receipts {
		if r.UserKey == user {
			return r, true
		}
	}
	return Receipt{}, false
}

func (e *entry) remove(tabID string) {
	delete(e.tabs, tabID)
	if i := slices.IndexFunc(e.receipts, func(r Receipt) bool { return r.TabID == tabID }); i >= 0 {
		e.receipts = slices.Delete(e.receipts, i, i+1)
	}
}

// waiter is a WaitTabs (k receipts) or WaitUser (a receipt of user) call.
type waiter struct {
	k      int
	user   string
	byUser bool
	done   chan struct{} // closed when got or err is set
	got    []Receipt
	err    error
}

// satisfied sets w.got and reports true when e has what w waits for.
func (w *waiter) satisfied(e *entry) bool {
	if w.byUser {
		if r, ok := e.userReceipt(w.user); ok {
			w.got = []Receipt{r}
			return true
		}
		return false
	}
	if len(e.receipts) >= w.k {
		w.got = slices.Clone(e.receipts)
		return true
	}
	return false
}

// expectation is an Expect or ExpectUser call.
type expectation struct {
	user    string
	byUser  bool
	timer   *time.Timer
	settled bool // a matching receipt came, it fired, or the Tracker closed
}

func (x *expectation) matches(r Receipt) bool { return !x.byUser || r.UserKey == x.user }

// kept is one receipt in a Tracker's arrival order.
type kept struct {
	msgID, tabID string
	at           time.Time
}
