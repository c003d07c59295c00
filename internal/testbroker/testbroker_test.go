package testbroker

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/brokerversion"
)

func TestMain(m *testing.M) {
	if os.Getenv("TESTBROKER_ORPHAN_CHILD") == "1" {
		orphanChild()
		return
	}
	os.Exit(m.Run())
}

func requireRabbit(t *testing.T) {
	t.Helper()
	if err := brokerversion.MustSelected().CheckInstalled(); err != nil {
		t.Fatal(err)
	}
}

func dial(t *testing.T, n *Node) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(n.AMQPURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// publishPersistent declares the durable queue (with the optional
// arguments) and publishes body to it with a confirm.
func publishPersistent(t *testing.T, c *amqp.Connection, queue, body string, args ...amqp.Table) {
	t.Helper()
	ch, err := c.Channel()
	require.NoError(t, err)
	defer ch.Close()
	var qargs amqp.Table
	if len(args) > 0 {
		qargs = args[0]
	}
	_, err = ch.QueueDeclare(queue, true, false, false, false, qargs)
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", queue, true, false, amqp.Publishing{
		DeliveryMode: amqp.Persistent,
		Body:         []byte(body),
	})
	require.NoError(t, err)
	acked, err := dc.WaitContext(ctx)
	require.NoError(t, err)
	require.True(t, acked, "publish nacked")
}

func requireNoProcesses(t *testing.T, name string) {
	t.Helper()
	require.Empty(t, nodeProcs(name), "processes left for %s", name)
	out, err := exec.Command("ps", "-eww", "-o", "pid=,stat=,args=").Output()
	require.NoError(t, err)
	for _, l := range strings.Split(string(out), "\n") {
		// The node's watchdog (alive until Close) carries the name in its args.
		if strings.Contains(l, name) && !strings.Contains(l, " watchdog "+name) {
			t.Errorf("process with node name still in ps: %s", l)
		}
	}
}

// TestKillStartAgainKeepsPersistentMessage is the core destructive scenario:
// a persistent message confirmed into a durable queue survives kill -9.
func TestKillStartAgainKeepsPersistentMessage(t *testing.T) {
	requireRabbit(t)
	t.Parallel()
	n := Start(t, Options{})
	require.NotZero(t, n.BeamPID())
	require.True(t, n.Running())

	c := dial(t, n)
	publishPersistent(t, c, "durable-q", "survives kill -9")
	_ = c.Close()
	// Under load the queue declared last before a kill -9 is sometimes
	// missing after the restart (message confirmed, queue record gone:
	// RabbitMQ 3.10.8's Mnesia log, see README "Guarantees" and
	// cmd/killrepro). Flush that log first so this test is about the
	// message store.
	out, err := n.Ctl("eval", "mnesia:sync_log().")
	require.NoError(t, err, out)

	procs := n.Processes()
	t.Logf("processes before kill: %v", procs)
	start := time.Now()
	require.NoError(t, n.Kill())
	killTook := time.Since(start)
	require.False(t, n.Running())
	requireNoProcesses(t, n.Name())
	_, err = net.DialTimeout("tcp", n.AMQPAddr(), time.Second)
	require.Error(t, err, "AMQP port must be closed after Kill")

	start = time.Now()
	require.NoError(t, n.StartAgain())
	t.Logf("kill: %v, start again: %v", killTook, time.Since(start))

	c = dial(t, n)
	ch, err := c.Channel()
	require.NoError(t, err)
	msg, ok, err := ch.Get("durable-q", true)
	require.NoError(t, err)
	require.True(t, ok, "message lost across kill -9")
	require.Equal(t, "survives kill -9", string(msg.Body))
	require.Equal(t, uint8(amqp.Persistent), msg.DeliveryMode)

	// Graceful restart keeps data too.
	publishPersistent(t, c, "durable-q", "survives restart")
	_ = c.Close()
	start = time.Now()
	require.NoError(t, n.Restart())
	t.Logf("graceful restart: %v", time.Since(start))
	c = dial(t, n)
	ch, err = c.Channel()
	require.NoError(t, err)
	msg, ok, err = ch.Get("durable-q", true)
	require.NoError(t, err)
	require.True(t, ok, "message lost across restart")
	require.Equal(t, "survives restart", string(msg.Body))
}

// TestCustomOptionsAndCleanup covers a custom user, extra config, the
// Web-STOMP and management listeners, Ctl, and that Close leaves nothing.
func TestCustomOptionsAndCleanup(t *testing.T) {
	requireRabbit(t)
	t.Parallel()
	n, err := StartNode(Options{
		Username: "alice",
		Password: "s3cret",
		Config:   []string{"heartbeat = 5"},
		Logf:     t.Logf,
	})
	require.NoError(t, err)
	defer n.Close()
	require.Contains(t, n.AMQPURL(), "amqp://alice:s3cret@127.0.0.1:")

	out, err := n.Ctl("list_users")
	require.NoError(t, err)
	require.Contains(t, out, "alice")
	out, err = n.Ctl("eval", "application:get_env(rabbit, heartbeat).")
	require.NoError(t, err)
	require.Contains(t, out, "{ok,5}")
	c := dial(t, n)
	require.NoError(t, c.Close())

	// Management API answers with the custom user.
	req, err := http.NewRequest("GET", n.ManagementURL()+"/api/overview", nil)
	require.NoError(t, err)
	req.SetBasicAuth("alice", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	requireWebSTOMP(t, n.WebSTOMPURL(), "alice", "s3cret")

	// STOMP TCP listener answers.
	sc, err := net.DialTimeout("tcp", n.STOMPAddr(), time.Second)
	require.NoError(t, err)
	_ = sc.Close()

	name, base, ports := n.Name(), n.BaseDir(), n.Ports()
	require.NotEmpty(t, n.Processes())
	require.NoError(t, n.Close())
	require.NoError(t, n.Close(), "Close is idempotent")
	requireNoProcesses(t, name)
	_, err = os.Stat(base)
	require.True(t, os.IsNotExist(err), "base dir left: %s", base)
	// Port reservations are released.
	l, ok := tryLockPort(portLockDir(), ports.AMQP)
	require.True(t, ok)
	l.release()
}

// requireWebSTOMP checks that a STOMP CONNECT over a websocket to url gets
// CONNECTED.
func requireWebSTOMP(t *testing.T, url, login, passcode string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"v12.stomp"}})
	require.NoError(t, err)
	defer ws.CloseNow()
	require.NoError(t, ws.Write(ctx, websocket.MessageText,
		[]byte("CONNECT\naccept-version:1.2\nhost:/\nlogin:"+login+"\npasscode:"+passcode+"\n\n\x00")))
	_, frame, err := ws.Read(ctx)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(frame), "CONNECTED"), "%s: got %q", url, frame)
	_ = ws.Close(websocket.StatusNormalClosure, "")
}

// orphanChild runs in a child test binary: it starts a node and blocks until
// killed, without any cleanup.
func orphanChild() {
	n, err := StartNode(Options{Plugins: []string{}})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(1)
	}
	fmt.Printf("NODE %s %s\n", n.Name(), n.BaseDir())
	select {}
}

// TestWatchdogKillsOrphanedNode kills a test binary that owns a node with
// SIGKILL and checks that the watchdog removes the node and its directory.
func TestWatchdogKillsOrphanedNode(t *testing.T) {
	requireRabbit(t)
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TESTBROKER_ORPHAN_CHILD=1")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	f := strings.Fields(line)
	require.Len(t, f, 3, "child said %q", line)
	require.Equal(t, "NODE", f[0])
	name, base := f[1], f[2]
	require.NotEmpty(t, nodeProcs(name))

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	deadline := time.Now().Add(15 * time.Second)
	for len(nodeProcs(name)) > 0 || exists(base) {
		if time.Now().After(deadline) {
			t.Fatalf("orphaned node not cleaned: procs %v, base exists %v", nodeProcs(name), exists(base))
		}
		time.Sleep(100 * time.Millisecond)
	}
	requireNoProcesses(t, name)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestNodeWithoutPlugins shares one plugin-less node (boots are the
// expensive part) between the memory alarm and crash scenarios.
func TestNodeWithoutPlugins(t *testing.T) {
	requireRabbit(t)
	t.Parallel()
	n := Start(t, Options{Plugins: []string{}})
	require.Empty(t, n.WebSTOMPURL())
	require.Empty(t, n.ManagementURL())
	require.Empty(t, n.STOMPAddr())
	t.Run("MemoryAlarmBlocksPublishers", func(t *testing.T) { testMemoryAlarm(t, n) })
	t.Run("StartAgainAfterExternalCrash", func(t *testing.T) { testExternalCrash(t, n) })
}

// testMemoryAlarm checks that SetMemoryAlarm really produces
// connection.blocked and withholds confirms, and that clearing it unblocks.
func testMemoryAlarm(t *testing.T, n *Node) {

	c := dial(t, n)
	blocked := c.NotifyBlocked(make(chan amqp.Blocking, 4))
	ch, err := c.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare("alarm-q", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))

	require.NoError(t, n.SetMemoryAlarm(true))
	// RabbitMQ blocks a connection (and sends connection.blocked) when it
	// publishes while an alarm is in effect.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "alarm-q", false, false,
		amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("x")})
	require.NoError(t, err)
	select {
	case b := <-blocked:
		require.True(t, b.Active)
		t.Logf("blocked: %q", b.Reason)
	case <-time.After(15 * time.Second):
		t.Fatal("no connection.blocked after memory alarm")
	}
	select {
	case <-dc.Done():
		t.Fatal("publish confirmed while blocked")
	case <-time.After(500 * time.Millisecond):
	}

	require.NoError(t, n.SetMemoryAlarm(false))
	select {
	case b := <-blocked:
		require.False(t, b.Active)
	case <-time.After(15 * time.Second):
		t.Fatal("no connection.unblocked after clearing the alarm")
	}
	acked, err := dc.WaitContext(ctx)
	require.NoError(t, err)
	require.True(t, acked)
}

// testExternalCrash: beam.smp killed behind the Node's back (e.g. by the OOM
// killer) is noticed, and StartAgain brings it back.
func testExternalCrash(t *testing.T, n *Node) {
	pid := n.BeamPID()
	require.NotZero(t, pid)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	deadline := time.Now().Add(10 * time.Second)
	for n.Running() {
		require.True(t, time.Now().Before(deadline), "Running() still true after beam.smp died")
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, n.StartAgain())
	require.NotEqual(t, pid, n.BeamPID())
	_, err := n.Ctl("status")
	require.NoError(t, err)
}
