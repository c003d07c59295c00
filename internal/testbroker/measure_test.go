//go:build measure

package testbroker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMeasureBootTimes reports boot/stop timings with and without "+S 1:1".
// A measurement, not part of the suite (it boots 16 nodes):
//
//	go test -tags measure -run TestMeasureBootTimes -v ./internal/testbroker/
func TestMeasureBootTimes(t *testing.T) {
	requireRabbit(t)
	timed := func(what string, f func() error) time.Duration {
		t0 := time.Now()
		require.NoError(t, f(), what)
		return time.Since(t0).Round(10 * time.Millisecond)
	}
	for _, erl := range []string{"", "+S 1:1", "", "+S 1:1"} {
		for _, plugins := range [][]string{nil, {}} {
			var n *Node
			start := timed("start", func() (err error) {
				n, err = StartNode(Options{ErlArgs: erl, Plugins: plugins})
				return err
			})
			kill := timed("kill -9", n.Kill)
			again := timed("start after kill", n.StartAgain)
			stop := timed("graceful stop", n.Stop)
			again2 := timed("start after stop", n.StartAgain)
			require.NoError(t, n.Close())
			t.Logf("erl=%q plugins=%v: start %v, kill %v, start-after-kill %v, graceful stop %v, start-after-stop %v",
				erl, plugins, start, kill, again, stop, again2)
		}
	}
}
