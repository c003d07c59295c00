package receipts

import (
	"testing"
	"time"
)

// The waits start at 100 ms and double up to 5 s, each jittered to half
// to all of its delay; reset starts over.
func TestBackoff(t *testing.T) {
	var b backoff
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000}
	for round := range 2 {
		for i, d := range want {
			d *= time.Millisecond
			for range 20 {
				saved := b
				got := b.next()
				if got < d/2 || got > d {
					t.Fatalf("round %d, wait %d: %v, want %v to %v", round, i, got, d/2, d)
				}
				b = saved
			}
			b.next()
		}
		b.reset()
	}
	stop := make(chan struct{})
	close(stop)
	start := time.Now()
	if b.sleep(nil, stop) {
		t.Fatal("sleep with a closed stop channel reported a full wait")
	}
	if time.Since(start) > 50*time.Millisecond {
		t.Fatal("sleep did not return when stop was closed")
	}
	if !b.sleep(nil, nil) {
		t.Fatal("sleep without stop did not report a full wait")
	}
}
