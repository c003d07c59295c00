package tabsession

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// userQueues keeps, per user, the tab queues this Handler knows to be live
// (with the time of their last session request) and the user's budget for
// creating new ones (a token bucket). It tells when a user is over
// Config.MaxQueuesPerUser and decides the Config.QueueCreateBurst/Interval
// refusals; the Handler does the broker work. Safe for concurrent use.
//
// It only knows what this Handler served: queues made by another instance,
// or before a restart, count from their next session request here. An
// entry is forgotten forget after its last use (the broker has expired the
// queue by then unless a tab still consumes it), so memory stays bounded by
// the users active within that time.
type userQueues struct {
	max      int           // cap per user; < 0: none
	burst    int           // bucket size; < 0: no rate limit
	interval time.Duration // one token per interval
	forget   time.Duration
	now      func() time.Time

	mu        sync.Mutex
	users     map[string]*userState
	lastSweep time.Time
}

// userState is one user's entry of userQueues.
type userState struct {
	queues   map[string]time.Time // queue -> last session request
	tokens   float64              // creations allowed now (bucket level)
	tokensAt time.Time            // when tokens was computed
}

func newUserQueues(cfg Config, now func() time.Time) *userQueues {
	return &userQueues{
		max:      cfg.MaxQueuesPerUser,
		burst:    cfg.QueueCreateBurst,
		interval: cfg.QueueCreateInterval,
		// A little beyond QueueExpires: the broker's expiry timer is not
		// exact (quorum queues expire a few seconds late).
		forget: cfg.QueueExpires + time.Minute,
		now:    now,
		users:  make(map[string]*userState),
	}
}

// use records a session request for queue, which exists. When the user
// then holds more queues than the cap, it returns the user's other queues,
// least recently used first, and how many of them must go (excess); the
// caller picks which (preferring queues no tab reads) and reports back with
// drop and touch.
func (u *userQueues) use(user, queue string) (candidates []string, excess int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	s := u.state(user, now)
	s.queues[queue] = now
	if u.max < 0 || len(s.queues) <= max(u.max, 1) {
		return nil, 0
	}
	for q := range s.queues {
		if q != queue {
			candidates = append(candidates, q)
		}
	}
	slices.SortFunc(candidates, func(a, b string) int {
		if c := s.queues[a].Compare(s.queues[b]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return candidates, len(s.queues) - max(u.max, 1)
}

// drop forgets user's queues (deleted, or found gone).
func (u *userQueues) drop(user string, queues ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if s := u.users[user]; s != nil {
		for _, q := range queues {
			delete(s.queues, q)
		}
	}
}

// touch marks user's queues as used now (a tab was seen reading them).
func (u *userQueues) touch(user string, queues ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	if s := u.users[user]; s != nil {
		for _, q := range queues {
			if _, ok := s.queues[q]; ok {
				s.queues[q] = now
			}
		}
	}
}

// allowCreate takes one creation from user's budget. When the budget is
// spent it returns false and how long until the next creation is allowed.
// After the queue was created, call use.
func (u *userQueues) allowCreate(user string) (retryAfter time.Duration, ok bool) {
	if u.burst < 0 {
		return 0, true
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	s := u.state(user, now)
	s.tokens = min(float64(u.burst), s.tokens+float64(now.Sub(s.tokensAt))/float64(u.interval))
	s.tokensAt = now
	if s.tokens < 1 {
		return time.Duration((1 - s.tokens) * float64(u.interval)), false
	}
	s.tokens--
	return 0, true
}

// live lists user's live queues, for tests.
func (u *userQueues) live(user string) map[string]time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make(map[string]time.Time)
	if s := u.users[user]; s != nil {
		for q, t := range s.queues {
			out[q] = t
		}
	}
	return out
}

// state returns user's entry (made with a full bucket when missing), with
// the queues not used within forget dropped. Now and then it sweeps every
// user, so users who left do not stay in memory.
func (u *userQueues) state(user string, now time.Time) *userState {
	if now.Sub(u.lastSweep) > u.forget {
		u.lastSweep = now
		for name, s := range u.users {
			u.expireLocked(s, now)
			if len(s.queues) == 0 && u.bucketFull(s, now) {
				delete(u.users, name)
			}
		}
	}
	s := u.users[user]
	if s == nil {
		s = &userState{queues: make(map[string]time.Time), tokens: float64(max(u.burst, 0)), tokensAt: now}
		u.users[user] = s
	}
	u.expireLocked(s, now)
	return s
}

func (u *userQueues) expireLocked(s *userState, now time.Time) {
	for q, at := range s.queues {
		if now.Sub(at) > u.forget {
			delete(s.queues, q)
		}
	}
}

func (u *userQueues) bucketFull(s *userState, now time.Time) bool {
	return u.burst < 0 || s.tokens+float64(now.Sub(s.tokensAt))/float64(u.interval) >= float64(u.burst)
}
