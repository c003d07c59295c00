package stomptab

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/durablews/durablews/broadcast"
)

// The wire protocol's rules without a broker: a resume repeats the last
// handled frame (skipped by offset), offsets may skip without a gap after
// the first frame, a message stored twice is dropped by id, and the gap
// rule looks only at a subscription's first frame.
func TestStreamReaderRules(t *testing.T) {
	r := NewStreamReader("s", broadcast.Position{}, 0)
	msg := func(id string) Message { return Message{ID: id} }

	// First subscription from "first": no reference, no gap.
	r.observe(broadcast.Position{}, true, msg("a"), 7)
	r.observe(broadcast.Position{}, false, msg("b"), 8)
	r.observe(broadcast.Position{}, false, msg("c"), 10) // offset 9 held no message
	assert.Equal(t, broadcast.LastPosition(10), r.Position())

	// Resume at offset=10: the broker repeats 10, then goes on.
	want := r.Position()
	r.observe(want, true, msg("c"), 10)
	r.observe(want, false, msg("b"), 12) // a publisher retry stored b twice
	r.observe(want, false, msg("d"), 13)
	assert.Empty(t, r.Gaps())

	// Resume at offset=13 after retention removed 13..19.
	want = r.Position()
	r.observe(want, true, msg("x"), 20)
	r.observe(want, false, msg("y"), 22)
	assert.Equal(t, []Gap{{From: 14, To: 19}}, r.Gaps())

	// Resume where only a non-message offset was removed: first == last+1 is no gap.
	want = r.Position()
	r.observe(want, true, msg("z"), 23)
	assert.Len(t, r.Gaps(), 1)

	assert.Equal(t, []string{"a", "b", "c", "d", "x", "y", "z"}, r.HandledIDs())
	assert.Equal(t, StreamStats{Deliveries: 9, Handled: 7, SkippedOffset: 1, DuplicateID: 1}, r.Stats())
	assert.Equal(t, [][2]string{{"id", "stream-s"}, {"prefetch-count", "10"}, {"x-stream-offset", "offset=23"}}, r.Headers(r.Position()))
}
