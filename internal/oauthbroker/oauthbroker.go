// Package oauthbroker starts private RabbitMQ nodes configured for durablews
// tab sessions by the project's own script, scripts/rabbitmq-tab-sessions.sh,
// so tests exercise exactly the broker configuration operators get.
//
// Start renders the script's files (signing key, advanced.config) into a
// temporary directory without touching any node (DURABLEWS_TABS_OFFLINE=1),
// boots an internal/testbroker node with that advanced.config and the
// rabbitmq_auth_backend_oauth2 plugin, then runs the script online against
// the node (operator policy, check of the running config). Nothing here
// touches the machine's shared broker or /etc/rabbitmq.
package oauthbroker

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/durablews/durablews/internal/testbroker"
)

// PluginOAuth2 is RabbitMQ's OAuth 2 / JWT authentication backend plugin.
const PluginOAuth2 = "rabbitmq_auth_backend_oauth2"

// Defaults the script uses, which the tests rely on.
const (
	KeyID            = "durablews-dev"
	ResourceServerID = "rabbitmq"
	PolicyName       = "durablews-tab-sessions"
)

// Files are the script's outputs for one private configuration.
type Files struct {
	Dir            string // DURABLEWS_TABS_CONF_DIR
	KeyFile        string // DURABLEWS_TABS_KEY_FILE
	AdvancedConfig string // contents of Dir/advanced.config
}

// ScriptPath is the absolute path of scripts/rabbitmq-tab-sessions.sh.
func ScriptPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "scripts", "rabbitmq-tab-sessions.sh")
}

// Result is one script run.
type Result struct {
	Stdout, Stderr string
	Err            error
}

func (r Result) String() string {
	return fmt.Sprintf("err=%v\nstdout:\n%s\nstderr:\n%s", r.Err, r.Stdout, r.Stderr)
}

// Run runs the script with args, the given DURABLEWS_TABS_* settings
// (KEY=VALUE) and an environment cleaned of RABBITMQ_* variables. It never
// reads stdin.
func Run(ctx context.Context, env []string, args ...string) Result {
	cmd := exec.CommandContext(ctx, "bash", append([]string{ScriptPath()}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Env = append(cleanEnv(), env...)
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	return Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
}

// OfflineEnv is the environment for a files-only run into dir.
func OfflineEnv(dir string) []string {
	return []string{
		"DURABLEWS_TABS_CONF_DIR=" + dir,
		"DURABLEWS_TABS_KEY_FILE=" + filepath.Join(dir, "dev-signing-key"),
		"DURABLEWS_TABS_OFFLINE=1",
	}
}

// NodeEnv is the environment for an online run against a private node
// whose files are in f.Dir. The script is told never to restart it.
func NodeEnv(n *testbroker.Node, f Files) []string {
	return []string{
		"DURABLEWS_TABS_CONF_DIR=" + f.Dir,
		"DURABLEWS_TABS_KEY_FILE=" + f.KeyFile,
		"DURABLEWS_TABS_NODE=" + n.Name(),
		// The node's own CLI wrappers: the right RabbitMQ version (chroot'ed
		// into its root where it has one), its cookie, no shared env file.
		"DURABLEWS_TABS_CTL_DIR=" + n.CLIDir(),
		"DURABLEWS_TABS_RESTART=never",
	}
}

// Render runs the script offline into a new temporary directory (removed
// after the test) and returns its files.
func Render(t testing.TB) Files {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := Run(ctx, OfflineEnv(dir), "apply")
	if r.Err != nil {
		t.Fatalf("oauthbroker: %s apply (offline): %s", ScriptPath(), r)
	}
	adv, err := os.ReadFile(filepath.Join(dir, "advanced.config"))
	if err != nil {
		t.Fatalf("oauthbroker: script wrote no advanced.config: %v\n%s", err, r)
	}
	return Files{Dir: dir, KeyFile: filepath.Join(dir, "dev-signing-key"), AdvancedConfig: string(adv)}
}

// Start renders the configuration, boots a private node with it and applies
// the online part of the script (operator policy). The apply's output is
// returned so tests can assert that it configured without a restart. opts
// may carry extra settings; Plugins gets PluginOAuth2 added and
// AdvancedConfig must be empty.
func Start(t testing.TB, opts testbroker.Options) (*testbroker.Node, Files, Result) {
	t.Helper()
	if opts.AdvancedConfig != "" {
		t.Fatal("oauthbroker: Options.AdvancedConfig comes from the script")
	}
	f := Render(t)
	if opts.Plugins == nil {
		opts.Plugins = slices.Clone(testbroker.DefaultPlugins)
	}
	if !slices.Contains(opts.Plugins, PluginOAuth2) {
		opts.Plugins = append(slices.Clone(opts.Plugins), PluginOAuth2)
	}
	opts.AdvancedConfig = f.AdvancedConfig
	n := testbroker.Start(t, opts)
	// A handful of CLI calls: 7-47 s each on a saturated 2-vCPU machine.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := Run(ctx, NodeEnv(n, f), "apply")
	if r.Err != nil {
		t.Fatalf("oauthbroker: %s apply against %s: %s", ScriptPath(), n.Name(), r)
	}
	return n, f, r
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "RABBITMQ_") || strings.HasPrefix(k, "DURABLEWS_TABS_") || k == "ERL_LIBS" ||
			strings.HasPrefix(k, "ERL_") && strings.HasSuffix(k, "FLAGS") {
			continue
		}
		env = append(env, kv)
	}
	return env
}
