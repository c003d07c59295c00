package receipts

import "slices"

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
