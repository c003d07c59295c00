package durablews

import (
	"math"
	"testing"
)

// The round-robin counter of an exchange's channels is a uint32 that wraps;
// the index must stay in range past 2^31 calls on 32-bit platforms too,
// where int(uint32) is negative from there. Run it there as well:
//
//	GOARCH=386 go test -run TestChannelIndexStaysInRangeWhenTheCounterWraps .
func TestChannelIndexStaysInRangeWhenTheCounterWraps(t *testing.T) {
	for _, n := range []int{1, 2, 3, 64} {
		for _, c := range []uint32{0, 1, math.MaxInt32 - 1, math.MaxInt32, math.MaxInt32 + 1, math.MaxInt32 + 2, math.MaxUint32 - 1, math.MaxUint32} {
			if i := channelIndex(c, n); i < 0 || i >= n {
				t.Fatalf("channelIndex(%d, %d) = %d, not in [0, %d)", c, n, i, n)
			}
		}
	}
	// Round robin: consecutive counter values pick consecutive slots.
	if a, b := channelIndex(math.MaxInt32+1, 3), channelIndex(math.MaxInt32+2, 3); b != (a+1)%3 {
		t.Fatalf("slots %d then %d are not consecutive", a, b)
	}
}
