package receipts

import "time"

// expectation is an Expect or ExpectUser call.
type expectation struct {
	user    string
	byUser  bool
	timer   *time.Timer
	settled bool // a matching receipt came, it fired, or the Tracker closed
}

func (x *expectation) matches(r Receipt) bool { return !x.byUser || r.UserKey == x.user }
