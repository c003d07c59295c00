package durablews

import "sync"

// lazyChannel is one of an exchange's confirm channels: opened on first
// use, and opened again after a channel error closed it.
type lazyChannel struct {
	mu      sync.Mutex
	cur     *confirmChannel
	opening *roundTrip // open in progress; its result goes to cur
}

// get returns the open confirm channel, or the round trip opening one
// (started now if none is under way).
func (lc *lazyChannel) get(c *connection) (*confirmChannel, *roundTrip) {
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.cur != nil && !lc.cur.isClosed() {
		return lc.cur, nil
	}
	if lc.opening == nil {
		lc.opening = c.startRoundTrip(func() error {
			cc, err := openConfirmChannel(c)
			lc.mu.Lock()
			lc.cur, lc.opening = cc, nil
			lc.mu.Unlock()
			return err
		})
	}
	return nil, lc.opening
}
