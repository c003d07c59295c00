package broadcast_test

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/broadcast"
	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/stomptab"
)

var sharedWS = brokertest.WebSTOMPURL() // DURABLEWS_WEB_STOMP_URL overrides

func offsetsOf(msgs []stomptab.StreamMessage) []int64 {
	out := make([]int64, len(msgs))
	for i, m := range msgs {
		out[i] = m.Offset
	}
	return out
}

// A tab reading a stream over Web-STOMP loses its WebSocket (no
// DISCONNECT) with frames in flight, 150 more messages are published
// while it is away, and it resubscribes at its last offset: it handles
// every message exactly once, in order, and reports no gap, although the
// small segments make offsets skip (the reason the tab subscribes at last,
// not last+1). A page reload keeps only the offset (sessionStorage), not
// the ids seen: the offset rule alone keeps it duplicate-free.
func TestStreamTabResumesAfterCut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sharedAMQP)
	// 4 KB segments (~12 messages of 256 B): many segment starts, no truncation.
	cfg := e.stream(broadcast.Config{MaxLengthBytes: 50 << 20, MaxSegmentSizeBytes: 4000})
	pub := e.publisher()
	ctx := ctxT(t, 60*time.Second)

	want := e.publish(pub, "k", 150, 10, 256)
	r := stomptab.NewStreamReader(cfg.Stream, broadcast.Position{}, 10) // from the first message
	tab := dialTab(t, sharedWS)
	sub, err := r.Subscribe(ctx, tab)
	require.NoError(t, err)
	require.NoError(t, sub.Receive(ctx, 60))
	tab.Drop() // frames delivered but not handled are lost with the socket
	last := r.Position()
	require.Equal(t, broadcast.KindLast, last.Kind)

	want = append(want, e.publish(pub, "k", 150, 10, 256)...)
	tab = dialTab(t, sharedWS)
	assert.Equal(t, "offset="+itoa(last.Offset), r.Headers(r.Position())[2][1], "resubscribes at its last offset")
	sub, err = r.Subscribe(ctx, tab)
	require.NoError(t, err)
	require.NoError(t, sub.Receive(ctx, 200))
	tab.Drop()

	// Page reload: a new reader that knows only the last offset.
	reload := stomptab.NewStreamReader(cfg.Stream, r.Position(), 10)
	tab = dialTab(t, sharedWS)
	sub, err = reload.Subscribe(ctx, tab)
	require.NoError(t, err)
	require.NoError(t, sub.Receive(ctx, len(want)-200))
	require.NoError(t, tab.Close())

	got := append(r.HandledIDs(), reload.HandledIDs()...)
	assert.Equal(t, want, got, "every message once, in publish order, across a cut and a reload")
	assert.Empty(t, r.Gaps(), "nothing was truncated: no gap")
	assert.Empty(t, reload.Gaps())
	st, rst := r.Stats(), reload.Stats()
	assert.Equal(t, 1, st.SkippedOffset, "the resume repeats exactly the last handled frame")
	assert.Equal(t, 1, rst.SkippedOffset, "so does the reload")
	assert.Zero(t, st.DuplicateID+rst.DuplicateID)
	t.Logf("reader %+v, after reload %+v", st, rst)

	offs := offsetsOf(append(r.Handled(), reload.Handled()...))
	skips := 0
	for i := 1; i < len(offs); i++ {
		require.Greater(t, offs[i], offs[i-1], "offsets increase")
		if offs[i] > offs[i-1]+1 {
			skips++
			if skips == 1 {
				// Why not last+1: nothing is missing here, yet a tab
				// asking for offs[i-1]+1 first receives offs[i].
				o, _ := e.readAMQP(cfg.Stream, offs[i-1]+1, 1)
				assert.Equal(t, offs[i], o[0], "subscribing at last+1 starts beyond it")
			}
		}
	}
	assert.Positive(t, skips, "small segments must make offsets skip, or this test shows nothing about the gap rule")
	t.Logf("%d messages over offsets %d..%d, %d skips in the offsets", len(offs), offs[0], offs[len(offs)-1], skips)
}

// A tab away longer than retention comes back to a stream whose head was
// removed: the first offset it receives is beyond last+1, it reports the
// gap with the range, and carries on from the oldest message the stream
// still holds. Retention on 3.10.8 removes whole segments, in the
// background after a new segment starts; tiny limits make that happen
// within ~100 messages.
func TestStreamTabReportsRetentionGap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sharedAMQP)
	cfg := e.stream(broadcast.Config{MaxLengthBytes: 20000, MaxSegmentSizeBytes: 4000})
	pub := e.publisher()
	ctx := ctxT(t, 60*time.Second)

	e.publish(pub, "k", 10, 10, 256)
	r := stomptab.NewStreamReader(cfg.Stream, broadcast.Position{}, 10)
	tab := dialTab(t, sharedWS)
	sub, err := r.Subscribe(ctx, tab)
	require.NoError(t, err)
	require.NoError(t, sub.Receive(ctx, 5))
	tab.Drop()
	last := r.Position().Offset

	after := e.publish(pub, "k", 300, 10, 256) // ~90 KB through a 20 KB stream
	// Retention runs in the background after a segment starts: wait until
	// it is done (retention_test.go), then the stream holds what it holds
	// while the tab reads.
	first, waited, settled, err := e.settleRetention(cfg.Stream)
	require.NoError(t, err)
	require.True(t, settled, "retention still removing segments after %v (first offset %d)", waited, first)
	require.Greater(t, first, last+1, "retention must remove the tab's position (offset %d) for this test to mean anything; the stream still starts at %d", last, first)

	tab = dialTab(t, sharedWS)
	sub, err = r.Subscribe(ctx, tab)
	require.NoError(t, err)
	require.NoError(t, sub.ReceiveID(ctx, after[len(after)-1]))
	require.NoError(t, tab.Close())
	if now, err := e.firstOffset(cfg.Stream); err != nil || now != first {
		t.Errorf("retention removed more while the tab read (first offset %d, then %d, %v): the wait above ended too early, so what follows cannot hold", first, now, err)
	}

	handled := r.Handled()[5:]
	require.NotEmpty(t, handled)
	from := handled[0].Offset
	assert.Greater(t, from, last+1)
	assert.Equal(t, []stomptab.Gap{{From: last + 1, To: from - 1}}, r.Gaps(), "the gap is reported with its range")
	idx := slices.Index(after, handled[0].ID)
	require.GreaterOrEqual(t, idx, 0, "the oldest message held is one of those published while away")
	assert.Equal(t, after[idx:], r.HandledIDs()[5:], "then everything the stream still holds, in order")
	assert.Zero(t, r.Stats().SkippedOffset)
	t.Logf("tab stopped at offset %d; retention settled %v after the publishes at first offset %d; the tab resumed at %d (message %d of %d published while away); gap %+v",
		last, waited.Round(time.Millisecond), first, from, idx, len(after), r.Gaps())
}
