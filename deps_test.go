package durablews_test

import (
	"os/exec"
	"strings"
	"testing"
)

// A service that only publishes must not compile the tab-session and
// metrics dependencies: those live in packages tabsession and prommetrics.
func TestRootPackageDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/durablews/durablews").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps listed only %d packages; expected the standard library and watermill at least:\n%s", len(deps), out)
	}
	for _, dep := range deps {
		for _, banned := range []string{"github.com/golang-jwt/jwt", "github.com/michaelklishin/rabbit-hole", "github.com/prometheus/"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("the root package depends on %s (via go list -deps); move that code out of package durablews", dep)
			}
		}
	}
	for _, own := range []string{"github.com/durablews/durablews/tabsession", "github.com/durablews/durablews/prommetrics"} {
		for _, dep := range deps {
			if dep == own {
				t.Errorf("the root package imports %s", own)
			}
		}
	}
}
