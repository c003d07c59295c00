// Package testbroker starts private, throw-away RabbitMQ nodes for
// destructive tests (kill -9, restarts, memory alarms, special auth config).
//
// Such tests must never touch the machine's shared broker (rabbit@localhost on
// 5672/15672/15674/61613), which other tests and engineers use concurrently.
// Each Node therefore gets its own node name, cookie, data/log directories,
// config files and ports, and runs the installed
// /usr/lib/rabbitmq/bin/rabbitmq-server as a child process so that the test
// holds its PID (for SIGKILL) and can restart it on the same data directory.
//
// Ports are reserved across processes with flock'ed files in
// $TMPDIR/durablews-testbroker-ports, so test packages run in parallel by
// "go test ./..." can each start nodes. A small watchdog
// process kills a node and removes its directory if the test binary dies
// without cleaning up (e.g. on a "go test -timeout" panic).
//
// Boot takes about 5 s on a 2-core machine (with management, stomp and
// web_stomp), mostly the Erlang VM loading ~1,200 modules; a graceful stop
// takes about 6 s when the management plugin is enabled, because its agent
// waits 5 s on shutdown (rabbitmq-server#11070, fixed after 3.10). Prefer
// Kill+StartAgain over Restart when a graceful shutdown is not the point of
// the test.
//
// StartCluster starts several such nodes (three by default) with one shared
// cookie and joins them into a RabbitMQ cluster with rabbitmqctl; killing,
// stopping and restarting a member is done on its Node. A cluster boots in
// 25-75 s on a loaded 2-core machine (nodes in parallel, joins one after
// the other); the time is logged.
package testbroker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/durablews/durablews/internal/brokerversion"
)

// Paths of the RabbitMQ scripts, inside the version's root ("/" for the
// machine's own). They are run directly: Debian's /usr/sbin wrappers switch
// to the rabbitmq user and the system paths.
const (
	ServerPath = "/usr/lib/rabbitmq/bin/rabbitmq-server"
	BinDir     = "/usr/lib/rabbitmq/bin"
)

// cliTools get a wrapper in every node's bin directory (Node.CLIDir).
var cliTools = []string{"rabbitmqctl", "rabbitmq-plugins", "rabbitmq-diagnostics", "rabbitmq-queues", "rabbitmq-streams"}

// Plugin names.
const (
	PluginManagement = "rabbitmq_management"
	PluginSTOMP      = "rabbitmq_stomp"
	PluginWebSTOMP   = "rabbitmq_web_stomp"
)

// DefaultPlugins are enabled when Options.Plugins is nil.
var DefaultPlugins = []string{PluginManagement, PluginSTOMP, PluginWebSTOMP}

// Options configure a node. The zero value gives a node with DefaultPlugins,
// user guest/guest and loopback_users = none.
type Options struct {
	// Plugins to enable. nil means DefaultPlugins; a non-nil empty slice
	// enables none. Listener ports are configured for management, stomp and
	// web_stomp when they are in the list.
	Plugins []string

	// Config lines appended to the generated rabbitmq.conf (new-style
	// sysctl format), e.g. "vm_memory_high_watermark.relative = 0.6".
	// Do not repeat keys that the package already sets (listeners,
	// loopback_users, default_user/default_pass); use the dedicated fields.
	Config []string

	// AdvancedConfig is written to advanced.config verbatim (Erlang terms,
	// including the final period), for settings rabbitmq.conf cannot express.
	AdvancedConfig string

	// Username and Password of the default user (administrator, full
	// permissions on /). Default guest/guest.
	Username, Password string

	// LoopbackUsers is the value of loopback_users. Default "none", so any
	// user may connect from anywhere.
	LoopbackUsers string

	// ErlArgs are extra Erlang VM flags (RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS).
	// "+S 1:1" was measured and did not boot faster on a 2-core machine.
	ErlArgs string

	// Env holds extra environment variables (KEY=VALUE) for the server.
	Env []string

	// StartTimeout bounds each boot (first start, StartAgain, Restart),
	// including WaitReady. Default 90 s.
	StartTimeout time.Duration

	// StopTimeout bounds a graceful Stop before falling back to SIGKILL.
	// Default 60 s.
	StopTimeout time.Duration

	// NamePrefix is the node name prefix; default "dwstest". The node is
	// named <prefix>-<random>@localhost.
	NamePrefix string

	// Cookie is the Erlang cookie. Empty means a random one, private to the
	// node; nodes that are to form a cluster (StartCluster) share one.
	Cookie string

	// Logf, if set, receives progress messages (boot and stop durations).
	// Start sets it to t.Logf when nil.
	Logf func(format string, args ...any)

	// Version is the RabbitMQ the node runs. The zero value means the one
	// DURABLEWS_RABBITMQ names (brokerversion.Selected): the machine's own
	// for 3.10, else a debootstrapped root of scripts/rabbitmq-versions.sh,
	// into which the node and its CLI calls are chroot'ed.
	Version brokerversion.Version
}

// Ports are the TCP ports of a node, all bound to 127.0.0.1. Ports of
// plugins that are not enabled are reserved but unused.
type Ports struct {
	AMQP       int
	Management int
	STOMP      int
	WebSTOMP   int
	Dist       int // Erlang distribution (RABBITMQ_DIST_PORT)
}

// Node is a private RabbitMQ node. Its methods are safe for concurrent use,
// but lifecycle operations (Stop, Kill, StartAgain, Restart, Close) are
// serialised.
type Node struct {
	opts    Options
	name    string
	base    string // host path of the node's directory
	ibase   string // the same directory as the node sees it (inside its root)
	plugins []string
	ports   Ports
	locks   []*portLock
	wd      *watchdog
	logf    func(string, ...any)

	mu     sync.Mutex  // serialises lifecycle operations
	srv    *serverProc // nil while the node is down
	closed bool
}

// serverProc is one boot of the rabbitmq-server script.
type serverProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	err    error         // Wait result, valid after exited is closed
}

// Start starts a node for the test and registers t.Cleanup to kill it and
// remove its directory. It calls t.Fatal if the node cannot start. On test
// failure the tail of the node's logs is logged before removal.
func Start(t testing.TB, opts Options) *Node {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	n, err := StartNode(opts)
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testbroker: %s logs (tail):\n%s", n.name, n.LogTail(60))
		}
		if err := n.Close(); err != nil {
			t.Errorf("testbroker: close %s: %v", n.name, err)
		}
	})
	return n
}

// StartNode starts a node and waits until it is ready. The caller must call
// Close. It is the non-test entry point (e.g. for benchmark commands).
func StartNode(opts Options) (*Node, error) {
	if opts.Plugins == nil {
		opts.Plugins = DefaultPlugins
	}
	if opts.Username == "" {
		opts.Username = "guest"
	}
	if opts.Password == "" {
		opts.Password = "guest"
	}
	if opts.LoopbackUsers == "" {
		opts.LoopbackUsers = "none"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 90 * time.Second
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 60 * time.Second
	}
	if opts.NamePrefix == "" {
		opts.NamePrefix = "dwstest"
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if opts.Version.Name == "" {
		v, err := brokerversion.Selected()
		if err != nil {
			return nil, err
		}
		opts.Version = v
	}
	if err := opts.Version.CheckInstalled(); err != nil {
		return nil, err
	}

	short := opts.NamePrefix + "-" + randHex(4)
	n := &Node{
		opts:    opts,
		name:    short + "@localhost",
		plugins: slices.Clone(opts.Plugins),
		logf:    logf,
	}
	// A chroot'ed node sees only its root: its directory lives in the
	// root's /tmp, and the node is given the path as it sees it.
	tmp := ""
	if opts.Version.Chrooted() {
		tmp = opts.Version.Path("/tmp")
	}
	base, err := os.MkdirTemp(tmp, "durablews-testbroker-"+short+"-")
	if err != nil {
		return nil, err
	}
	n.base = base
	n.ibase = base
	if opts.Version.Chrooted() {
		n.ibase = "/" + strings.TrimPrefix(strings.TrimPrefix(base, opts.Version.Root), "/")
	}
	fail := func(err error) (*Node, error) {
		n.closed = true
		n.wd.stop()
		for _, l := range n.locks {
			l.release()
		}
		_ = os.RemoveAll(base)
		return nil, err
	}
	for _, d := range []string{"home", "mnesia", "log", "bin"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			return fail(err)
		}
	}
	cookie := opts.Cookie
	if cookie == "" {
		cookie = strings.ToUpper(randHex(10))
	}
	if err := os.WriteFile(filepath.Join(base, "home", ".erlang.cookie"), []byte(cookie), 0o400); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(n.confEnvFile(), nil, 0o644); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(base, "enabled_plugins"),
		[]byte("["+strings.Join(n.plugins, ",")+"].\n"), 0o644); err != nil {
		return fail(err)
	}
	if opts.AdvancedConfig != "" {
		if err := os.WriteFile(filepath.Join(base, "advanced.config"), []byte(opts.AdvancedConfig), 0o644); err != nil {
			return fail(err)
		}
	}
	if err := n.writeCLIWrappers(); err != nil {
		return fail(err)
	}
	if n.wd, err = startWatchdog(n.name, base); err != nil {
		return fail(fmt.Errorf("start watchdog: %w", err))
	}

	// A port can be taken by a process outside our lock protocol between the
	// check and the node binding it; retry with fresh ports in that case.
	const attempts = 3
	for i := 1; ; i++ {
		if err := n.assignPorts(); err != nil {
			return fail(err)
		}
		err := n.boot()
		if err == nil {
			return n, nil
		}
		if i < attempts && strings.Contains(err.Error(), "eaddrinuse") {
			logf("testbroker: %s: port conflict, retrying with new ports", n.name)
			continue
		}
		return fail(err)
	}
}

func (n *Node) assignPorts() error {
	for _, l := range n.locks {
		l.release()
	}
	n.locks = nil
	locks, err := reservePorts(5)
	if err != nil {
		return err
	}
	n.locks = locks
	n.ports = Ports{
		AMQP:       locks[0].port,
		Management: locks[1].port,
		STOMP:      locks[2].port,
		WebSTOMP:   locks[3].port,
		Dist:       locks[4].port,
	}
	return os.WriteFile(filepath.Join(n.base, "rabbitmq.conf"), []byte(n.rabbitmqConf()), 0o644)
}

func (n *Node) rabbitmqConf() string {
	var b strings.Builder
	fmt.Fprintf(&b, "listeners.tcp.1 = 127.0.0.1:%d\n", n.ports.AMQP)
	fmt.Fprintf(&b, "loopback_users = %s\n", n.opts.LoopbackUsers)
	fmt.Fprintf(&b, "default_user = %s\n", n.opts.Username)
	fmt.Fprintf(&b, "default_pass = %s\n", n.opts.Password)
	if n.HasPlugin(PluginManagement) {
		fmt.Fprintf(&b, "management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %d\n", n.ports.Management)
	}
	if n.HasPlugin(PluginSTOMP) {
		fmt.Fprintf(&b, "stomp.listeners.tcp.1 = 127.0.0.1:%d\n", n.ports.STOMP)
	}
	if n.HasPlugin(PluginWebSTOMP) {
		fmt.Fprintf(&b, "web_stomp.tcp.ip = 127.0.0.1\nweb_stomp.tcp.port = %d\n", n.ports.WebSTOMP)
	}
	for _, l := range n.opts.Config {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}

func (n *Node) confEnvFile() string { return filepath.Join(n.base, "rabbitmq-env.conf") }

// cleanEnv is the current environment without variables that would leak the
// caller's RabbitMQ/Erlang settings into the node or CLI.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "RABBITMQ_") || k == "ERL_LIBS" || strings.HasPrefix(k, "ERL_") && strings.HasSuffix(k, "FLAGS") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// in is the path of a file in the node's directory as the node sees it.
func (n *Node) in(elem ...string) string { return filepath.Join(append([]string{n.ibase}, elem...)...) }

func (n *Node) serverEnv() []string {
	erlArgs := "-kernel inet_dist_use_interface {127,0,0,1} -durablews_testbroker " + n.name
	if n.opts.ErlArgs != "" {
		erlArgs += " " + n.opts.ErlArgs
	}
	env := append(cleanEnv(),
		"HOME="+n.in("home"),
		"RABBITMQ_NODENAME="+n.name,
		"RABBITMQ_DIST_PORT="+strconv.Itoa(n.ports.Dist),
		"RABBITMQ_MNESIA_BASE="+n.in("mnesia"),
		"RABBITMQ_LOG_BASE="+n.in("log"),
		"RABBITMQ_CONFIG_FILE="+n.in("rabbitmq.conf"),
		// Always point at our own file, even if absent: the default is
		// /etc/rabbitmq/advanced.config of the shared broker.
		"RABBITMQ_ADVANCED_CONFIG_FILE="+n.in("advanced.config"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+n.in("enabled_plugins"),
		// Not the shared broker's /etc/rabbitmq/conf.d/*.conf either.
		"RABBITMQ_CONFIG_FILES="+n.in("conf.d", "*.conf"),
		// The default /etc/rabbitmq/rabbitmq-env.conf sets NODENAME and
		// ERL_FLAGS for the shared broker.
		"RABBITMQ_CONF_ENV_FILE="+n.in("rabbitmq-env.conf"),
		"RABBITMQ_PID_FILE="+n.in("rabbitmq.pid"),
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+erlArgs,
	)
	return append(env, n.opts.Env...)
}

// command is name (a path inside the node's root) with args, chroot'ed
// into the root for a version that has one.
func (n *Node) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if !n.opts.Version.Chrooted() {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, "chroot", append([]string{n.opts.Version.Root, name}, args...)...)
}

// cliEnv is the environment of a CLI call against the node.
func (n *Node) cliEnv() []string {
	return append(cleanEnv(),
		"HOME="+n.in("home"),
		"RABBITMQ_CONF_ENV_FILE="+n.in("rabbitmq-env.conf"),
		// The CLI's default distribution port range is 35672-35682: eleven
		// ports shared by every concurrent CLI call on the machine. Port 0
		// lets the kernel pick one.
		"RABBITMQ_CTL_DIST_PORT_MIN=0",
		"RABBITMQ_CTL_DIST_PORT_MAX=0",
	)
}

// writeCLIWrappers puts one script per CLI tool into CLIDir that runs the
// tool of the node's version against the node, as CLIContext does.
func (n *Node) writeCLIWrappers() error {
	for _, tool := range cliTools {
		var b strings.Builder
		b.WriteString("#!/bin/sh\n# testbroker: " + tool + " of RabbitMQ " + n.opts.Version.Name + " against " + n.name + "\n")
		b.WriteString("unset RABBITMQ_NODENAME ERL_LIBS\n")
		fmt.Fprintf(&b, "export HOME=%q RABBITMQ_CONF_ENV_FILE=%q RABBITMQ_CTL_DIST_PORT_MIN=0 RABBITMQ_CTL_DIST_PORT_MAX=0\n",
			n.in("home"), n.in("rabbitmq-env.conf"))
		exe := filepath.Join(BinDir, tool)
		if n.opts.Version.Chrooted() {
			fmt.Fprintf(&b, "exec chroot %q %q -n %q \"$@\"\n", n.opts.Version.Root, exe, n.name)
		} else {
			fmt.Fprintf(&b, "exec %q -n %q \"$@\"\n", exe, n.name)
		}
		if err := os.WriteFile(filepath.Join(n.CLIDir(), tool), []byte(b.String()), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// CLIDir holds a script per RabbitMQ CLI tool (rabbitmqctl,
// rabbitmq-plugins, rabbitmq-diagnostics, rabbitmq-queues,
// rabbitmq-streams) that runs the tool of the node's version against the
// node, with its cookie: for scripts, and for poking at a node by hand.
func (n *Node) CLIDir() string { return filepath.Join(n.base, "bin") }

// Version is the RabbitMQ the node runs.
func (n *Node) Version() brokerversion.Version { return n.opts.Version }

// boot starts the server process and waits for readiness. Caller holds n.mu
// or has exclusive access.
func (n *Node) boot() error {
	if n.srv != nil {
		select {
		case <-n.srv.exited: // crashed or stopped behind our back
			if err := n.reapLocked(time.Second); err != nil {
				return err
			}
		default:
			return errors.New("node is already running")
		}
	}
	console, err := os.OpenFile(n.consoleLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(console, "\n==== testbroker: starting %s at %s ====\n", n.name, time.Now().Format(time.RFC3339Nano))
	cmd := n.command(context.Background(), ServerPath)
	cmd.Dir = n.base
	cmd.Env = n.serverEnv()
	cmd.Stdout = console
	cmd.Stderr = console
	// Own process group: Kill signals the whole group, and a terminal's
	// Ctrl-C does not reach the node before the watchdog does its work.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	err = cmd.Start()
	_ = console.Close() // the child holds its own copy
	if err != nil {
		return fmt.Errorf("start %s: %w", ServerPath, err)
	}
	srv := &serverProc{cmd: cmd, exited: make(chan struct{})}
	n.srv = srv
	go func() {
		srv.err = cmd.Wait()
		close(srv.exited)
	}()
	_ = os.WriteFile(filepath.Join(n.base, "pgid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), n.opts.StartTimeout)
	defer cancel()
	phases, err := n.waitReady(ctx, srv)
	if err != nil {
		_ = n.killLocked()
		return fmt.Errorf("node %s did not start: %w\n%s", n.name, err, n.LogTail(40))
	}
	// When each wait ended says where a slow boot went (a busy machine
	// makes await_startup's CLI slow, not the broker).
	n.logf("testbroker: %s ready in %v (%s; amqp %d, web-stomp %d, beam pid %d)",
		n.name, time.Since(start).Round(time.Millisecond), phases, n.ports.AMQP, n.ports.WebSTOMP, n.BeamPID())
	return nil
}

func (n *Node) brokerLog() string { return filepath.Join(n.LogDir(), n.name+".log") }

// WaitReady waits until the node's AMQP port (and the STOMP, Web-STOMP and
// management ports of enabled plugins) accept connections and
// "rabbitmqctl await_startup" succeeds. Start, StartAgain and Restart already
// call it.
func (n *Node) WaitReady(ctx context.Context) error {
	n.mu.Lock()
	srv := n.srv
	n.mu.Unlock()
	if srv == nil {
		return errors.New("node is not running")
	}
	_, err := n.waitReady(ctx, srv)
	return err
}

// waitReady returns when each wait was over, as "amqp 3.1s, web-stomp
// 3.2s, await_startup 4.9s" (time since the call).
func (n *Node) waitReady(ctx context.Context, srv *serverProc) (string, error) {
	type port struct{ name, addr string }
	ports := []port{{"amqp", n.AMQPAddr()}}
	if n.HasPlugin(PluginWebSTOMP) {
		ports = append(ports, port{"web-stomp", n.WebSTOMPAddr()})
	}
	if n.HasPlugin(PluginSTOMP) {
		ports = append(ports, port{"stomp", n.STOMPAddr()})
	}
	if n.HasPlugin(PluginManagement) {
		ports = append(ports, port{"management", n.managementAddr()})
	}
	start := time.Now()
	var phases []string
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, p := range ports {
		for {
			c, err := net.DialTimeout("tcp", p.addr, time.Second)
			if err == nil {
				_ = c.Close()
				break
			}
			select {
			case <-srv.exited:
				return "", fmt.Errorf("server process exited (%v)", srv.err)
			case <-ctx.Done():
				return "", fmt.Errorf("waiting for %s port %s (waited for: %s): %w", p.name, p.addr, strings.Join(phases, ", "), ctx.Err())
			case <-tick.C:
			}
		}
		phases = append(phases, fmt.Sprintf("%s %v", p.name, time.Since(start).Round(10*time.Millisecond)))
	}
	// Open listeners are not a booted node: the plugins' listeners open
	// before their applications count as started, and `durablews doctor`
	// run then reports them missing (TestDoctor_WebSTOMPDisabled failed
	// so when readiness was an AMQP login). await_startup waits for the
	// boot to complete. Its CLI VM is slow on a busy machine (0.5 s idle;
	// 17-20 s of wall time for 0.5 s of CPU with four busy loops on 2
	// vCPUs): tests must not depend on how long a boot takes.
	out, err := n.CLIContext(ctx, "rabbitmqctl", "await_startup")
	if err != nil {
		return "", fmt.Errorf("await_startup (after %s): %w: %s", strings.Join(phases, ", "), err, out)
	}
	phases = append(phases, fmt.Sprintf("await_startup %v", time.Since(start).Round(10*time.Millisecond)))
	select {
	case <-srv.exited:
		return "", fmt.Errorf("server process exited (%v)", srv.err)
	default:
	}
	return strings.Join(phases, ", "), nil
}

// Name is the Erlang node name, e.g. dwstest-1a2b3c4d@localhost.
func (n *Node) Name() string { return n.name }

// BaseDir is the node's private directory (home, mnesia, log, config files).
func (n *Node) BaseDir() string { return n.base }

// LogDir is RABBITMQ_LOG_BASE; <node>.log is the broker log and console.log
// holds the server's stdout/stderr of every boot.
func (n *Node) LogDir() string { return filepath.Join(n.base, "log") }

func (n *Node) consoleLog() string { return filepath.Join(n.LogDir(), "console.log") }

// Ports returns the node's ports.
func (n *Node) Ports() Ports { return n.ports }

// HasPlugin reports whether the plugin is enabled on the node.
func (n *Node) HasPlugin(p string) bool { return slices.Contains(n.plugins, p) }

// Username of the default user.
func (n *Node) Username() string { return n.opts.Username }

// Password of the default user.
func (n *Node) Password() string { return n.opts.Password }

// AMQPAddr is host:port of the AMQP listener.
func (n *Node) AMQPAddr() string { return hostPort(n.ports.AMQP) }

// AMQPURL is amqp://user:pass@127.0.0.1:<port>/ for the default user.
func (n *Node) AMQPURL() string {
	u := url.URL{Scheme: "amqp", User: url.UserPassword(n.opts.Username, n.opts.Password), Host: n.AMQPAddr(), Path: "/"}
	return u.String()
}

// WebSTOMPAddr is host:port of the Web-STOMP listener ("" if not enabled).
func (n *Node) WebSTOMPAddr() string {
	if !n.HasPlugin(PluginWebSTOMP) {
		return ""
	}
	return hostPort(n.ports.WebSTOMP)
}

// WebSTOMPURL is ws://127.0.0.1:<port>/ws ("" if web_stomp is not enabled).
func (n *Node) WebSTOMPURL() string {
	if !n.HasPlugin(PluginWebSTOMP) {
		return ""
	}
	return "ws://" + n.WebSTOMPAddr() + "/ws"
}

// STOMPAddr is host:port of the plain STOMP listener ("" if not enabled).
func (n *Node) STOMPAddr() string {
	if !n.HasPlugin(PluginSTOMP) {
		return ""
	}
	return hostPort(n.ports.STOMP)
}

func (n *Node) managementAddr() string { return hostPort(n.ports.Management) }

// ManagementURL is http://127.0.0.1:<port> without a trailing slash, so
// ManagementURL()+"/api/queues" works ("" if management is not enabled).
func (n *Node) ManagementURL() string {
	if !n.HasPlugin(PluginManagement) {
		return ""
	}
	return "http://" + n.managementAddr()
}

func hostPort(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }

// Ctl runs "rabbitmqctl -n <node> args..." with the node's HOME (cookie) and
// returns its combined output. It times out after 60 s.
func (n *Node) Ctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return n.CLIContext(ctx, "rabbitmqctl", args...)
}

// CLIContext runs one of the RabbitMQ CLI tools in BinDir (rabbitmqctl,
// rabbitmq-plugins, rabbitmq-diagnostics, rabbitmq-queues, ...) against the
// node and returns its combined output.
func (n *Node) CLIContext(ctx context.Context, tool string, args ...string) (string, error) {
	if strings.ContainsRune(tool, '/') {
		return "", fmt.Errorf("tool must be a name in %s", BinDir)
	}
	cmd := n.command(ctx, filepath.Join(BinDir, tool), append([]string{"-n", n.name}, args...)...)
	cmd.Dir = n.base
	cmd.Env = n.cliEnv()
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	s := strings.TrimSpace(string(out))
	if err != nil {
		return s, fmt.Errorf("%s %s: %w: %s", tool, strings.Join(args, " "), err, s)
	}
	return s, nil
}

// Running reports whether the server process is running.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return false
	}
	select {
	case <-n.srv.exited:
		return false
	default:
		return true
	}
}

// BeamPID returns the PID of the node's beam.smp process, or 0.
func (n *Node) BeamPID() int {
	for _, p := range nodeProcs(n.name) {
		if p.Comm == "beam.smp" {
			return p.PID
		}
	}
	return 0
}

// Processes lists the live processes that belong to the node (the
// rabbitmq-server shell, beam.smp, erl_child_setup, inet_gethost), found by
// the RABBITMQ_NODENAME in their environment. Empty after Kill, Stop and
// Close.
func (n *Node) Processes() []Proc { return nodeProcs(n.name) }

// Kill sends SIGKILL to beam.smp and the rest of the node's process group,
// waits for the server process to exit and makes sure no helper process
// (erl_child_setup, inet_gethost) is left. Data stays for StartAgain.
// Killing a stopped node is a no-op.
func (n *Node) Kill() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	start := time.Now()
	err := n.killLocked()
	n.logf("testbroker: %s killed in %v", n.name, time.Since(start).Round(time.Millisecond))
	return err
}

func (n *Node) killLocked() error {
	if n.srv == nil {
		return nil
	}
	if pid := n.BeamPID(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(-n.srv.cmd.Process.Pid, syscall.SIGKILL)
	return n.reapLocked(10 * time.Second)
}

// reapLocked waits for the server process to exit, then kills leftovers.
func (n *Node) reapLocked(timeout time.Duration) error {
	var errs []error
	select {
	case <-n.srv.exited:
	case <-time.After(timeout):
		errs = append(errs, fmt.Errorf("server process %d did not exit", n.srv.cmd.Process.Pid))
	}
	if left := killNodeProcs(n.name, 5*time.Second); len(left) > 0 {
		errs = append(errs, fmt.Errorf("processes left: %v", left))
	}
	_ = os.Remove(filepath.Join(n.base, "pgid"))
	n.srv = nil
	return errors.Join(errs...)
}

// Stop shuts the node down gracefully (SIGTERM, which rabbitmq-server turns
// into an orderly shutdown), falling back to SIGKILL after
// Options.StopTimeout. Data stays for StartAgain.
func (n *Node) Stop() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopLocked()
}

func (n *Node) stopLocked() error {
	if n.srv == nil {
		return nil
	}
	start := time.Now()
	// The rabbitmq-server script traps TERM and forwards it to beam.smp.
	_ = n.srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.srv.exited:
	case <-time.After(n.opts.StopTimeout):
		n.logf("testbroker: %s did not stop within %v, killing", n.name, n.opts.StopTimeout)
		return n.killLocked()
	}
	err := n.reapLocked(time.Second)
	n.logf("testbroker: %s stopped in %v", n.name, time.Since(start).Round(time.Millisecond))
	return err
}

// StartAgain boots a stopped or killed node with the same name, ports and
// data directory, so durable queues and persistent messages come back. It
// waits until the node is ready.
func (n *Node) StartAgain() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("node is closed")
	}
	return n.boot()
}

// Restart is a graceful Stop followed by StartAgain.
func (n *Node) Restart() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("node is closed")
	}
	if err := n.stopLocked(); err != nil {
		return err
	}
	return n.boot()
}

// MemoryHighWatermarkAlarm is the relative watermark SetMemoryAlarm(true)
// sets: low enough that any node is above it.
const MemoryHighWatermarkAlarm = "0.0000001"

// MemoryHighWatermarkDefault is RabbitMQ's default relative watermark, which
// SetMemoryAlarm(false) restores.
const MemoryHighWatermarkDefault = "0.4"

// SetMemoryAlarm raises (on) or clears the node's memory alarm by changing
// the memory high watermark with rabbitmqctl, and waits until the alarm
// state matches. While the alarm is on, publishing connections are blocked
// (connection.blocked) and their publishes are not read. The setting lasts
// until the next boot.
func (n *Node) SetMemoryAlarm(on bool) error {
	wm := MemoryHighWatermarkDefault
	if on {
		wm = MemoryHighWatermarkAlarm
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := n.CLIContext(ctx, "rabbitmqctl", "set_vm_memory_high_watermark", wm); err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	for {
		active, err := n.memoryAlarmActive(ctx)
		if err != nil {
			return err
		}
		if active == on {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("memory alarm still %v: %w", active, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (n *Node) memoryAlarmActive(ctx context.Context) (bool, error) {
	out, err := n.CLIContext(ctx, "rabbitmqctl", "eval", "rabbit_alarm:get_alarms().")
	if err != nil {
		return false, err
	}
	// e.g. [{{resource_limit,memory,'dwstest-1a2b3c4d@localhost'},[]}]
	return strings.Contains(out, "resource_limit,memory,"), nil
}

// Close kills the node (no graceful shutdown: the data is discarded), stops
// the watchdog, releases the ports and removes the base directory. It is
// idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	err := n.killLocked()
	n.wd.stop()
	for _, l := range n.locks {
		l.release()
	}
	n.locks = nil
	if rerr := os.RemoveAll(n.base); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// LogTail returns the last lines of the server console output and of the
// broker log file.
func (n *Node) LogTail(lines int) string {
	var b strings.Builder
	for _, f := range []string{n.consoleLog(), n.brokerLog()} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s ---\n%s\n", filepath.Base(f), tail(data, lines))
	}
	return b.String()
}

func tail(data []byte, lines int) []byte {
	data = bytes.TrimRight(data, "\n")
	i := len(data)
	for k := 0; k < lines && i > 0; k++ {
		i = bytes.LastIndexByte(data[:i], '\n')
		if i < 0 {
			return data
		}
	}
	return data[i+1:]
}

func randHex(nbytes int) string {
	b := make([]byte, nbytes)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
