package durablews_test

import (
	"os"
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
	for _, own := range []string{"github.com/durablews/durablews/tabsession", "github.com/durablews/durablews/prommetrics", "github.com/durablews/durablews/broadcast"} {
		for _, dep := range deps {
			if dep == own {
				t.Errorf("the root package imports %s", own)
			}
		}
	}
}

// The package doc's "Other packages" names every public library package
// (one with non-test Go files, outside internal/, cmd/ and example/).
func TestPackageDocNamesEveryPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{len .GoFiles}}", "github.com/durablews/durablews/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	const root = "github.com/durablews/durablews/"
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, files, _ := strings.Cut(line, " ")
		rel, ok := strings.CutPrefix(path, root)
		if !ok || files == "0" || strings.HasPrefix(rel, "internal/") || strings.HasPrefix(rel, "cmd/") || strings.HasPrefix(rel, "example") {
			continue
		}
		checked++
		if !strings.Contains(strings.ToLower(string(doc)), "package "+rel) {
			t.Errorf("doc.go does not name package %s under \"Other packages\"", rel)
		}
	}
	if checked < 3 {
		t.Fatalf("checked only %d packages; go list said:\n%s", checked, out)
	}
}
