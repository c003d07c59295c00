package receipts

import "slices"

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
