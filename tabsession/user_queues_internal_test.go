package tabsession

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newFakeClock() *fakeClock           { return &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)} }
func liveNames(u *userQueues, user string) []string {
	return slices.Sorted(maps.Keys(u.live(user)))
}

func limitsConfig(mod func(*Config)) Config {
	cfg := Config{}
	if mod != nil {
		mod(&cfg)
	}
	cfg.setDefaults()
	return cfg
}

// useLRU is use, with every excess queue deleted least recently used first
// (what the Handler does when no tab reads them).
func useLRU(u *userQueues, user, queue string) []string {
	candidates, excess := u.use(user, queue)
	victims := candidates[:excess]
	u.drop(user, victims...)
	return victims
}

func TestUserQueuesCapEvictsLeastRecentlyUsed(t *testing.T) {
	clock := newFakeClock()
	u := newUserQueues(limitsConfig(func(c *Config) { c.MaxQueuesPerUser = 3 }), clock.now)
	for i := range 3 {
		assert.Empty(t, useLRU(u, "alice", fmt.Sprint("a", i)))
		clock.add(time.Second)
	}
	// a0 is used again: a1 is now the least recently used.
	assert.Empty(t, useLRU(u, "alice", "a0"))
	clock.add(time.Second)
	candidates, excess := u.use("alice", "a3")
	assert.Equal(t, []string{"a1", "a2", "a0"}, candidates, "least recently used first, never the queue in use")
	assert.Equal(t, 1, excess)
	u.drop("alice", "a1")
	clock.add(time.Second)
	assert.Equal(t, []string{"a2"}, useLRU(u, "alice", "a4"))
	assert.Equal(t, []string{"a0", "a3", "a4"}, liveNames(u, "alice"))
	// A queue seen in use (touch) moves to the back of the line.
	clock.add(time.Second)
	u.touch("alice", "a0")
	clock.add(time.Second)
	assert.Equal(t, []string{"a3"}, useLRU(u, "alice", "a5"))
	u.touch("alice", "never-seen") // touching an unknown queue adds nothing
	assert.Equal(t, []string{"a0", "a4", "a5"}, liveNames(u, "alice"))
	// Other users have their own cap.
	for i := range 3 {
		assert.Empty(t, useLRU(u, "bob", fmt.Sprint("b", i)))
	}
	assert.Equal(t, []string{"a0", "a4", "a5"}, liveNames(u, "alice"))
	// The queue being used is never its own victim, even at a cap of 1.
	one := newUserQueues(limitsConfig(func(c *Config) { c.MaxQueuesPerUser = 1 }), clock.now)
	useLRU(one, "carol", "c0")
	assert.Equal(t, []string{"c0"}, useLRU(one, "carol", "c1"))
	assert.Empty(t, useLRU(one, "carol", "c1"))
}

func TestUserQueuesDefaultCapAndNoCap(t *testing.T) {
	clock := newFakeClock()
	u := newUserQueues(limitsConfig(nil), clock.now)
	var evicted []string
	for i := range DefaultMaxQueuesPerUser + 10 {
		evicted = append(evicted, useLRU(u, "alice", fmt.Sprintf("a%02d", i))...)
		clock.add(time.Millisecond)
	}
	assert.Len(t, u.live("alice"), DefaultMaxQueuesPerUser)
	assert.Equal(t, []string{"a00", "a01", "a02", "a03", "a04", "a05", "a06", "a07", "a08", "a09"}, evicted)

	none := newUserQueues(limitsConfig(func(c *Config) { c.MaxQueuesPerUser = -1 }), clock.now)
	for i := range 100 {
		candidates, excess := none.use("alice", fmt.Sprint("a", i))
		assert.Empty(t, candidates)
		assert.Zero(t, excess)
	}
	assert.Len(t, none.live("alice"), 100)
}

func TestUserQueuesRateLimit(t *testing.T) {
	clock := newFakeClock()
	u := newUserQueues(limitsConfig(func(c *Config) { c.QueueCreateBurst = 3; c.QueueCreateInterval = 10 * time.Second }), clock.now)
	for i := range 3 {
		_, ok := u.allowCreate("alice")
		require.True(t, ok, "creation %d is within the burst", i)
	}
	wait, ok := u.allowCreate("alice")
	assert.False(t, ok, "the 4th creation at once is over the burst")
	assert.Equal(t, 10*time.Second, wait)
	_, ok = u.allowCreate("bob")
	assert.True(t, ok, "another user has a budget of their own")

	clock.add(4 * time.Second)
	wait, ok = u.allowCreate("alice")
	assert.False(t, ok)
	assert.Equal(t, 6*time.Second, wait, "retry after what is left of the interval")
	clock.add(6 * time.Second)
	_, ok = u.allowCreate("alice")
	assert.True(t, ok, "one token per interval")
	_, ok = u.allowCreate("alice")
	assert.False(t, ok)

	clock.add(time.Hour)
	for i := range 3 {
		_, ok := u.allowCreate("alice")
		assert.True(t, ok, "the bucket refills to the burst, not beyond (%d)", i)
	}
	_, ok = u.allowCreate("alice")
	assert.False(t, ok)

	off := newUserQueues(limitsConfig(func(c *Config) { c.QueueCreateBurst = -1 }), clock.now)
	for range 1000 {
		_, ok := off.allowCreate("alice")
		require.True(t, ok)
	}
	def := newUserQueues(limitsConfig(nil), clock.now)
	for range DefaultQueueCreateBurst {
		_, ok := def.allowCreate("alice")
		require.True(t, ok)
	}
	wait, ok = def.allowCreate("alice")
	assert.False(t, ok)
	assert.Equal(t, DefaultQueueCreateInterval, wait)
}

func TestUserQueuesForgetsExpiredQueuesAndIdleUsers(t *testing.T) {
	clock := newFakeClock()
	u := newUserQueues(limitsConfig(func(c *Config) { c.MaxQueuesPerUser = 2; c.QueueExpires = time.Hour }), clock.now)
	u.use("alice", "a0")
	clock.add(50 * time.Minute)
	u.use("alice", "a1")
	clock.add(20 * time.Minute) // a0 unused for 70 min: expired by the broker
	candidates, excess := u.use("alice", "a2")
	assert.Zero(t, excess, "an expired queue is not counted, so nothing is over the cap: %v", candidates)
	assert.Equal(t, []string{"a1", "a2"}, liveNames(u, "alice"))

	_, _ = u.allowCreate("bob")
	u.use("bob", "b0")
	clock.add(2 * time.Hour)
	u.use("carol", "c0") // sweeps
	u.mu.Lock()
	users := slices.Sorted(maps.Keys(u.users))
	u.mu.Unlock()
	assert.Equal(t, []string{"carol"}, users, "users with no live queue and a full bucket are dropped")
}
