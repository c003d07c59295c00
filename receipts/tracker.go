package receipts

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// Tracker keeps the receipts that arrived in the last Retention and lets a
// service wait for them or act on their absence:
//
//   - WaitTabs(ctx, id, k) returns once k tabs sent a receipt for message
//     id (at once if they already did);
//   - WaitUser(ctx, id, userKey) returns once one of a user's tabs did;
//   - Expect / ExpectUser call a fallback (an e-mail, a push
//     notification) if none did within a duration;
//   - TrackerConfig.OnReceipt sees every new receipt.
//
// Receipts are at least once (a tab sends a batch again when it missed the
// broker's RECEIPT, the Subscriber hands out a requeued batch again); the
// Tracker drops a receipt whose (message id, tab id) it still keeps, so
// each counts once. Memory is bounded by TrackerConfig.Retention and
// MaxEntries. It is safe for concurrent use.
type Tracker struct {
	cfg    TrackerConfig
	logger watermill.LoggerAdapter

	mu     sync.Mutex
	closed bool
	msgs   map[string]*entry
	order  []kept // arrival order of the receipts kept; order[head:] are live
	head   int
	n      int          // receipts kept
	stats  TrackerStats // Kept unused: n

	callbacks sync.WaitGroup // Expect callbacks running
	cancel    context.CancelFunc
	consumed  chan struct{} // closed when the consumer goroutine ended
	closeOnce sync.Once
}

// NewTracker returns a Tracker. With config.Subscriber set it subscribes
// to config.Topic and records every receipt message it reads (acking it),
// until Close; a message that is not a receipt is logged and acked. A nil
// logger logs nothing.
func NewTracker(config TrackerConfig, logger watermill.LoggerAdapter) (*Tracker, error) {
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	t := &Tracker{
		cfg:      config,
		logger:   logger.With(watermill.LogFields{"component": "receipts.Tracker"}),
		msgs:     map[string]*entry{},
		consumed: make(chan struct{}),
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	if config.Subscriber == nil {
		close(t.consumed)
		return t, nil
	}
	msgs, err := config.Subscriber.Subscribe(ctx, config.Topic)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("receipts: tracker: subscribe to %q: %w", config.Topic, err)
	}
	go t.consume(msgs)
	return t, nil
}

func (t *Tracker) consume(msgs <-chan *message.Message) {
	defer close(t.consumed)
	for m := range msgs {
		if err := t.Handle(m); err != nil {
			m.Nack() // closed: the receipt stays in the queue for the next consumer
			continue
		}
		m.Ack()
	}
	t.mu.Lock()
	closed := t.closed
	t.mu.Unlock()
	if !closed {
		t.logger.Error("Receipt subscription ended before the Tracker was closed (was the Subscriber closed?); no more receipts are recorded", nil, nil)
	}
}

// Handle records the receipt msg carries. It is a
// message.NoPublishHandlerFunc for a Router handler consuming a
// Subscriber (use either that or TrackerConfig.Subscriber):
//
//	router.AddConsumerHandler("receipts", "#", sub, tracker.Handle)
//
// A message that is not a receipt is logged and Handle returns nil, so it
// is acked: it would never become one. After Close it returns
// ErrTrackerClosed, so the message is nacked and stays in the queue.
func (t *Tracker) Handle(msg *message.Message) error {
	r, err := FromMessage(msg)
	if err != nil {
		t.logger.Error("Dropping a message that is not a receipt", err, watermill.LogFields{"message_uuid": msg.UUID})
		return nil
	}
	if _, open := t.add(r); !open {
		return ErrTrackerClosed
	}
	return nil
}

// Add records r and reports whether it was new: false for a duplicate
// (same MessageID and TabID as a receipt still kept) and after Close.
// A new receipt wakes the WaitTabs and WaitUser calls it completes,
// settles the Expect and ExpectUser calls it matches, then goes to
// TrackerConfig.OnReceipt.
func (t *Tracker) Add(r Receipt) bool {
	added, _ := t.add(r)
	return added
}

// add records r; open is false after Close.
func (t *Tracker) add(r Receipt) (added, open bool) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return false, false
	}
	now := t.cfg.Now()
	t.expire(now)
	e := t.msgs[r.MessageID]
	if e == nil {
		e = newEntry()
		t.msgs[r.MessageID] = e
	}
	if _, dup := e.tabs[r.TabID]; dup {
		t.stats.Duplicates++
		t.mu.Unlock()
		return false, true
	}
	t.stats.Receipts++
	e.receipts = append(e.receipts, r)
	e.tabs[r.TabID] = struct{}{}
	t.order = append(t.order, kept{msgID: r.MessageID, tabID: r.TabID, at: now})
	t.n++
	e.waiters = slices.DeleteFunc(e.waiters, func(w *waiter) bool {
		if w.satisfied(e) {
			close(w.done)
			return true
		}
		return false
	})
	e.expects = slices.DeleteFunc(e.expects, func(x *expectation) bool {
		if x.matches(r) {
			x.timer.Stop()
			x.settled = true
			t.stats.Met++
			return true
		}
		return false
	})
	for t.n > t.cfg.MaxEntries {
		t.dropOldest()
	}
	t.mu.Unlock()
	if t.cfg.OnReceipt != nil {
		t.safely("TrackerConfig.OnReceipt", func() { t.cfg.OnReceipt(r) })
	}
	return true, true
}

// Receipts returns the receipts of message msgID kept now, in arrival
// order.
func (t *Tracker) Receipts(msgID string) []Receipt {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(t.cfg.Now())
	if e := t.msgs[msgID]; e != nil {
		return slices.Clone(e.receipts)
	}
	return nil
}

// WaitTabs waits until k different tabs sent a receipt for message msgID
// and returns the receipts kept for it then (k or more, in arrival order).
// It returns at once if they already arrived (within Retention). When ctx
// ends first it returns the receipts that did arrive and an error
// wrapping ctx.Err(); after Close, ErrTrackerClosed. k must be at least 1.
func (t *Tracker) WaitTabs(ctx context.Context, msgID string, k int) ([]Receipt, error) {
	if k < 1 {
		return nil, fmt.Errorf("receipts: WaitTabs(%q, k=%d): k must be at least 1", msgID, k)
	}
	got, err := t.wait(ctx, msgID, &waiter{k: k})
	if err != nil && !errors.Is(err, ErrTrackerClosed) {
		err = fmt.Errorf("receipts: %d of %d tab receipts for message %q: %w", len(got), k, msgID, err)
	}
	return got, err
}

// WaitUser waits until a tab of userKey sent a receipt for message msgID
// and returns that receipt (the first one, if several tabs did). It
// returns at once if one already arrived (within Retention). When ctx
// ends first the error wraps ctx.Err(); after Close it is
// ErrTrackerClosed.
func (t *Tracker) WaitUser(ctx context.Context, msgID, userKey string) (Receipt, error) {
	got, err := t.wait(ctx, msgID, &waiter{user: userKey, byUser: true})
	if err != nil {
		if !errors.Is(err, ErrTrackerClosed) {
			err = fmt.Errorf("receipts: no receipt of user %q for message %q: %w", userKey, msgID, err)
		}
		return Receipt{}, err
	}
	return got[0], nil
}

// wait returns w's receipts once it is satisfied; on ctx's end, what
// arrived with ctx.Err().
func (t *Tracker) wait(ctx context.Context, msgID string, w *waiter) ([]Receipt, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrTrackerClosed
	}
	t.expire(t.cfg.Now())
	e := t.msgs[msgID]
	if e == nil {
		e = newEntry()
		t.msgs[msgID] = e
	}
	if w.satisfied(e) {
		t.forgetIfIdle(msgID, e)
		t.mu.Unlock()
		return w.got, nil
	}
	w.done = make(chan struct{})
	e.waiters = append(e.waiters, w)
	t.mu.Unlock()

	select {
	case <-w.done:
		return w.got, w.err
	case <-ctx.Done():
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-w.done: // satisfied or closed meanwhile
		return w.got, w.err
	default:
	}
	e.waiters = slices.DeleteFunc(e.waiters, func(o *waiter) bool { return o == w })
	var got []Receipt
	if w.byUser {
		if r, ok := e.userReceipt(w.user); ok {
			got = []Receipt{r}
		}
	} else {
		got = slices.Clone(e.receipts)
	}
	t.forgetIfIdle(msgID, e)
	return got, ctx.Err()
}

// Expect calls onMissing(msgID) once, in a goroutine of its own, if no
// tab sent a receipt for message msgID within the given duration: the
// fallback hook (send an e-mail, a push notification). A receipt that
// already arrived (and is still kept) settles it at once, so call Expect
// right after publishing, within Retention. After Close nothing is
// called. A nil onMissing does nothing.
func (t *Tracker) Expect(msgID string, within time.Duration, onMissing func(msgID string)) {
	t.expect(msgID, &expectation{}, within, onMissing)
}

// ExpectUser is Expect for one user: onMissing is called if no tab of
// userKey sent a receipt for message msgID within the given duration
// (receipts of other users' tabs do not count).
func (t *Tracker) ExpectUser(msgID, userKey string, within time.Duration, onMissing func(msgID string)) {
	t.expect(msgID, &expectation{user: userKey, byUser: true}, within, onMissing)
}

func (t *Tracker) expect(msgID string, x *expectation, within time.Duration, onMissing func(string)) {
	if onMissing == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.expire(t.cfg.Now())
	e := t.msgs[msgID]
	if e != nil && slices.ContainsFunc(e.receipts, x.matches) {
		t.stats.Met++
		return
	}
	if e == nil {
		e = newEntry()
		t.msgs[msgID] = e
	}
	e.expects = append(e.expects, x)
	// An entry with expectations is never forgotten, so e stays msgID's.
	x.timer = time.AfterFunc(within, func() {
		t.mu.Lock()
		if x.settled || t.closed {
			t.mu.Unlock()
			return
		}
		x.settled = true
		t.stats.Missed++
		e.expects = slices.DeleteFunc(e.expects, func(o *expectation) bool { return o == x })
		t.forgetIfIdle(msgID, e)
		t.callbacks.Add(1) // under mu, before Close can set closed and Wait
		t.mu.Unlock()
		defer t.callbacks.Done()
		t.safely("Expect's onMissing", func() { onMissing(msgID) })
	})
}

// Len returns the number of receipts kept now.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(t.cfg.Now())
	return t.n
}

// Stats returns what the Tracker recorded since it was made, and how many
// receipts it keeps now.
func (t *Tracker) Stats() TrackerStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.expire(t.cfg.Now())
	s := t.stats
	s.Kept = t.n
	return s
}

// Close stops consuming (TrackerConfig.Subscriber stays open), ends the
// WaitTabs and WaitUser calls waiting with ErrTrackerClosed, cancels every
// Expect and ExpectUser that has not fired, and waits for the onMissing
// calls running and for the consumer to stop. It is idempotent.
func (t *Tracker) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		for _, e := range t.msgs {
			for _, w := range e.waiters {
				w.err = ErrTrackerClosed
				close(w.done)
			}
			for _, x := range e.expects {
				x.timer.Stop()
				x.settled = true
			}
		}
		t.msgs = map[string]*entry{}
		t.order, t.head, t.n = nil, 0, 0
		t.mu.Unlock()
		t.cancel()
		<-t.consumed
		t.callbacks.Wait()
	})
	return nil
}

// expire drops the receipts older than Retention. Called with mu held.
func (t *Tracker) expire(now time.Time) {
	for t.head < len(t.order) && now.Sub(t.order[t.head].at) >= t.cfg.Retention {
		t.dropOldest()
	}
}

// dropOldest drops the receipt that arrived first. Called with mu held.
func (t *Tracker) dropOldest() {
	k := t.order[t.head]
	t.order[t.head] = kept{}
	t.head++
	t.n--
	if t.head > 1024 && t.head*2 > len(t.order) { // compact
		t.order = append(t.order[:0], t.order[t.head:]...)
		t.head = 0
	}
	if e := t.msgs[k.msgID]; e != nil {
		e.remove(k.tabID)
		t.forgetIfIdle(k.msgID, e)
	}
}

func (t *Tracker) forgetIfIdle(msgID string, e *entry) {
	if e.idle() && t.msgs[msgID] == e {
		delete(t.msgs, msgID)
	}
}

// safely runs a user callback, logging a panic instead of crashing.
func (t *Tracker) safely(what string, f func()) {
	defer func() {
		if p := recover(); p != nil {
			t.logger.Error(what+" panicked", fmt.Errorf("panic: %v", p), nil)
		}
	}()
	f()
}
