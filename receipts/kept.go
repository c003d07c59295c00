package receipts

import "time"

// kept is one receipt in a Tracker's arrival order.
type kept struct {
	msgID, tabID string
	at           time.Time
}
