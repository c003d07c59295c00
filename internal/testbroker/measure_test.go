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
	skipIfNoRabbit(t)
	for _, erl := range []string{"", "+S 1:1", "", "+S 1:1"} {
		for _, plugins := range [][]string{nil, {}} {
			t0 := time.Now()
			n, err := StartNode(Options{ErlArgs: erl, Plugins: plugins})
			require.NoError(t, err)
			start := time.Since(t0)
			t0 = time.Now()
			require.NoError(t, n.Kill())
			kill := time.Since(t0)
			t0 = time.Now()
			require.NoError(t, n.StartAgain())
			again := time.Since(t0)
			t0 = time.Now()
			require.NoError(t, n.Stop())
			stop := time.Since(t0)
			t0 = time.Now()
			require.NoError(t, n.StartAgain())
			again2 := time.Since(t0)
			require.NoError(t, n.Close())
			t.Logf("erl=%q plugins=%v: start %v, kill %v, start-after-kill %v, graceful stop %v, start-after-stop %v",
				erl, plugins, start.Round(10*time.Millisecond), kill.Round(10*time.Millisecond),
				again.Round(10*time.Millisecond), stop.Round(10*time.Millisecond), again2.Round(10*time.Millisecond))
		}
	}
}
