// Package web_test runs the browser client's binary-frame test: it needs a
// RabbitMQ node with web_stomp.ws_frame = binary, which the shared broker is
// not, so it boots a private one (internal/testbroker) and runs the node test
// test/binary-frames.e2e.js (headless Chromium) against it.
package web_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durablews/durablews/internal/testbroker"
)

func TestBinaryFramesInChromium(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is missing (%v): install Node.js 20, then `make web-deps`", err)
	}
	chromium := requireBrowser(t)

	node := testbroker.Start(t, testbroker.Options{Config: []string{"web_stomp.ws_frame = binary"}})
	mgmt := strings.Replace(node.ManagementURL(), "http://", "http://"+node.Username()+":"+node.Password()+"@", 1)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, "--test", filepath.Join("test", "binary-frames.e2e.js"))
	cmd.Env = append(os.Environ(), "DURABLEWS_WEB_STOMP_URL="+node.WebSTOMPURL(), "DURABLEWS_MANAGEMENT_URL="+mgmt, "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test test/binary-frames.e2e.js:\n%s", out)
	if err != nil {
		t.Fatalf("binary-frame browser test failed: %v", err)
	}
}

// requireBrowser fails the test unless headless Chromium (CHROMIUM, default
// chromium) and web/node_modules are there, and returns the Chromium command.
func requireBrowser(t *testing.T) string {
	t.Helper()
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "chromium"
	}
	if _, err := exec.LookPath(chromium); err != nil {
		t.Fatalf("headless Chromium is missing (%v): run `make chromium`", err)
	}
	if _, err := os.Stat("node_modules/@stomp/stompjs/esm6/index.js"); err != nil {
		t.Fatalf("web/node_modules is missing (%v): run `make web-deps`", err)
	}
	return chromium
}
