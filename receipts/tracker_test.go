package receipts_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/receipts"
)

// fakeClock ages the Tracker's receipts without waiting.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTracker(t *testing.T, cfg receipts.TrackerConfig) *receipts.Tracker {
	t.Helper()
	tr, err := receipts.NewTracker(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func rcpt(msgID, user, tab string) receipts.Receipt {
	return receipts.Receipt{MessageID: msgID, UserKey: user, TabID: tab, Subscription: "s", HandledAt: received, ReceivedAt: received}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestTracker_DropsDuplicatesAndCallsOnReceiptOncePerTab(t *testing.T) {
	var seen []string
	tr := newTracker(t, receipts.TrackerConfig{OnReceipt: func(r receipts.Receipt) { seen = append(seen, r.MessageUUID()) }})
	assert.True(t, tr.Add(rcpt("m1", "u", "t1")))
	assert.False(t, tr.Add(rcpt("m1", "u", "t1")), "same message, same tab")
	assert.True(t, tr.Add(rcpt("m1", "u", "t2")))
	assert.True(t, tr.Add(rcpt("m2", "u", "t1")))
	assert.Equal(t, []string{"m1/t1", "m1/t2", "m2/t1"}, seen)
	assert.Equal(t, 3, tr.Len())
	assert.Len(t, tr.Receipts("m1"), 2)
	assert.Equal(t, receipts.TrackerStats{Receipts: 3, Duplicates: 1, Kept: 3}, tr.Stats())
}

func TestTracker_WaitTabs(t *testing.T) {
	tr := newTracker(t, receipts.TrackerConfig{})
	tr.Add(rcpt("m", "u", "t1"))

	got, err := tr.WaitTabs(ctxFor(t, time.Second), "m", 1)
	require.NoError(t, err, "one receipt already arrived: returns at once")
	assert.Len(t, got, 1)

	done := make(chan []receipts.Receipt)
	go func() {
		got, err := tr.WaitTabs(ctxFor(t, 10*time.Second), "m", 3)
		assert.NoError(t, err)
		done <- got
	}()
	time.Sleep(20 * time.Millisecond)
	tr.Add(rcpt("m", "u", "t2"))
	tr.Add(rcpt("m", "u", "t2")) // a duplicate does not count
	select {
	case <-done:
		t.Fatal("WaitTabs returned with 2 of 3 tabs")
	case <-time.After(50 * time.Millisecond):
	}
	tr.Add(rcpt("m", "v", "t3"))
	select {
	case got := <-done:
		require.Len(t, got, 3)
		assert.Equal(t, []string{"t1", "t2", "t3"}, []string{got[0].TabID, got[1].TabID, got[2].TabID})
	case <-time.After(5 * time.Second):
		t.Fatal("WaitTabs did not return after the third tab's receipt")
	}

	got, err = tr.WaitTabs(ctxFor(t, 30*time.Millisecond), "m", 4)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "3 of 4 tab receipts for message \"m\"")
	assert.Len(t, got, 3, "what arrived is returned with the error")

	_, err = tr.WaitTabs(context.Background(), "m", 0)
	assert.ErrorContains(t, err, "k must be at least 1")
}

func TestTracker_WaitUser(t *testing.T) {
	tr := newTracker(t, receipts.TrackerConfig{})
	tr.Add(rcpt("m", "alice", "t1"))
	r, err := tr.WaitUser(ctxFor(t, time.Second), "m", "alice")
	require.NoError(t, err)
	assert.Equal(t, "t1", r.TabID)

	done := make(chan receipts.Receipt)
	go func() {
		r, err := tr.WaitUser(ctxFor(t, 10*time.Second), "m", "bob")
		assert.NoError(t, err)
		done <- r
	}()
	time.Sleep(20 * time.Millisecond)
	tr.Add(rcpt("m", "alice", "t2")) // another user's tab does not count
	tr.Add(rcpt("other", "bob", "t3"))
	select {
	case <-done:
		t.Fatal("WaitUser returned for another user's or message's receipt")
	case <-time.After(50 * time.Millisecond):
	}
	tr.Add(rcpt("m", "bob", "t4"))
	select {
	case r := <-done:
		assert.Equal(t, "t4", r.TabID)
	case <-time.After(5 * time.Second):
		t.Fatal("WaitUser did not return")
	}

	_, err = tr.WaitUser(ctxFor(t, 20*time.Millisecond), "m", "carol")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestTracker_ExpectCallsFallbackOnceWhenNoReceiptCame(t *testing.T) {
	tr := newTracker(t, receipts.TrackerConfig{})
	var mu sync.Mutex
	missing := map[string]int{}
	record := func(id string) { mu.Lock(); missing[id]++; mu.Unlock() }

	tr.Add(rcpt("before", "u", "t1"))
	tr.Expect("before", 10*time.Millisecond, record) // already arrived: never called
	tr.Expect("answered", 300*time.Millisecond, record)
	tr.Expect("silent", 30*time.Millisecond, record)
	tr.ExpectUser("other-user", "bob", 100*time.Millisecond, record)
	tr.ExpectUser("bob-answers", "bob", 300*time.Millisecond, record)
	tr.Add(rcpt("answered", "u", "t1"))
	tr.Add(rcpt("other-user", "alice", "t1")) // alice's tab: bob's expectation stands
	tr.Add(rcpt("bob-answers", "bob", "t9"))

	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]int{"silent": 1, "other-user": 1}, missing)
	assert.Equal(t, receipts.TrackerStats{Receipts: 4, Met: 3, Missed: 2, Kept: 4}, tr.Stats(),
		"met: before (at once), answered, bob-answers; missed: silent, other-user")
}

func TestTracker_CloseEndsWaitsAndCancelsExpectations(t *testing.T) {
	tr, err := receipts.NewTracker(receipts.TrackerConfig{}, nil)
	require.NoError(t, err)
	var fired atomic.Int32
	tr.Expect("m", 50*time.Millisecond, func(string) { fired.Add(1) })
	errs := make(chan error, 2)
	go func() { _, err := tr.WaitTabs(context.Background(), "m", 1); errs <- err }()
	go func() { _, err := tr.WaitUser(context.Background(), "m", "u"); errs <- err }()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, tr.Close())
	for range 2 {
		select {
		case err := <-errs:
			assert.ErrorIs(t, err, receipts.ErrTrackerClosed)
		case <-time.After(5 * time.Second):
			t.Fatal("a wait did not end on Close")
		}
	}
	time.Sleep(100 * time.Millisecond)
	assert.Zero(t, fired.Load(), "Expect fired after Close")
	assert.False(t, tr.Add(rcpt("m", "u", "t")))
	_, err = tr.WaitTabs(context.Background(), "m", 1)
	assert.ErrorIs(t, err, receipts.ErrTrackerClosed)
	assert.NoError(t, tr.Close(), "idempotent")
}

func TestTracker_CloseWaitsForRunningCallbacks(t *testing.T) {
	tr, err := receipts.NewTracker(receipts.TrackerConfig{}, nil)
	require.NoError(t, err)
	started, finished := make(chan struct{}), atomic.Bool{}
	tr.Expect("m", time.Millisecond, func(string) {
		close(started)
		time.Sleep(100 * time.Millisecond)
		finished.Store(true)
	})
	<-started
	require.NoError(t, tr.Close())
	assert.True(t, finished.Load(), "Close returned while onMissing was running")
}

func TestTracker_MemoryIsBoundedByRetentionAndMaxEntries(t *testing.T) {
	clock := &fakeClock{now: received}
	tr := newTracker(t, receipts.TrackerConfig{Retention: time.Minute, MaxEntries: 100, Now: clock.Now})
	for i := range 250 {
		tr.Add(rcpt(fmt.Sprint("m", i), "u", "t"))
	}
	assert.Equal(t, 100, tr.Len(), "MaxEntries")
	assert.Empty(t, tr.Receipts("m149"), "the oldest go first")
	assert.Len(t, tr.Receipts("m150"), 1)

	clock.Add(30 * time.Second)
	tr.Add(rcpt("late", "u", "t"))
	clock.Add(31 * time.Second)
	assert.Equal(t, 1, tr.Len(), "receipts older than Retention are dropped")
	assert.True(t, tr.Add(rcpt("m200", "u", "t")), "past the window a duplicate is new again")

	// A receipt that is no longer kept does not answer WaitTabs.
	_, err := tr.WaitTabs(ctxFor(t, 20*time.Millisecond), "m1", 1)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	clock.Add(2 * time.Minute)
	assert.Zero(t, tr.Len())
	assert.Equal(t, receipts.TrackerStats{Receipts: 252}, tr.Stats(), "counts stay; nothing kept")
}

func TestTracker_OnReceiptPanicIsRecovered(t *testing.T) {
	tr := newTracker(t, receipts.TrackerConfig{OnReceipt: func(receipts.Receipt) { panic("boom") }})
	assert.True(t, tr.Add(rcpt("m", "u", "t")))
	got, err := tr.WaitTabs(ctxFor(t, time.Second), "m", 1)
	require.NoError(t, err)
	assert.Len(t, got, 1)
}

func TestTracker_ConsumesAMessageChannel(t *testing.T) {
	bus := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer bus.Close()
	tr := newTracker(t, receipts.TrackerConfig{Subscriber: bus, Topic: "receipts"})

	r := rcpt("m", "u", "t1")
	payload, err := json.Marshal(r)
	require.NoError(t, err)
	go func() {
		_ = bus.Publish("receipts", message.NewMessage("x", []byte("not a receipt")), message.NewMessage(r.MessageUUID(), payload))
	}()
	got, err := tr.WaitTabs(ctxFor(t, 5*time.Second), "m", 1)
	require.NoError(t, err)
	assert.Equal(t, r, got[0])
	require.NoError(t, tr.Close())
}

func TestTracker_InvalidConfig(t *testing.T) {
	_, err := receipts.NewTracker(receipts.TrackerConfig{Retention: -1}, nil)
	assert.ErrorContains(t, err, "Retention")
	_, err = receipts.NewTracker(receipts.TrackerConfig{Subscriber: failingSubscriber{}}, nil)
	assert.ErrorContains(t, err, "subscribe to \"#\": no")
}

type failingSubscriber struct{}

func (failingSubscriber) Subscribe(context.Context, string) (<-chan *message.Message, error) {
	return nil, errors.New("no")
}
func (failingSubscriber) Close() error { return nil }
