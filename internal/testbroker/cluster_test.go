package testbroker

import (
	"context"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClusterLifecycle forms a 3-node cluster, checks that every node serves
// AMQP and Web-STOMP and sees the other two, kills one node with -9 and
// stops another gracefully (each restarted and rejoined), and that Close
// leaves no process, directory or port reservation behind.
func TestClusterLifecycle(t *testing.T) {
	requireRabbit(t)
	t.Parallel()
	c := StartCluster(t, ClusterOptions{})
	nodes := c.Nodes()
	require.Len(t, nodes, 3)
	t.Logf("cluster boot time: %v", c.BootTime().Round(time.Millisecond))

	// Every cluster_status is a CLI call: 7-47 s each on a saturated 2-vCPU
	// machine (see JoinTimeout), and a WaitRunning asks each observer.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	for _, n := range nodes {
		st, err := n.ClusterStatus(ctx)
		require.NoError(t, err)
		assert.ElementsMatch(t, c.Names(), st.RunningNodes, "%s's view", n.Name())
		assert.Empty(t, st.Partitions, "%s sees partitions", n.Name())
		requireWebSTOMP(t, n.WebSTOMPURL(), "guest", "guest")
	}

	// A quorum queue declared on node 1 is replicated: its messages are
	// readable through node 3 while node 1 is killed.
	conn := dial(t, nodes[0])
	publishPersistent(t, conn, "cluster-q", "before-kill", amqp.Table{"x-queue-type": "quorum"})
	_ = conn.Close()

	require.NoError(t, nodes[0].Kill())
	require.Empty(t, nodes[0].Processes())
	require.NoError(t, c.WaitRunning(ctx, nodes[1], nodes[2]))
	conn3 := dial(t, nodes[2])
	ch3, err := conn3.Channel()
	require.NoError(t, err)
	var msg amqp.Delivery
	require.Eventually(t, func() bool {
		// The queue's leader moves to a survivor first.
		m, ok, err := ch3.Get("cluster-q", true)
		if err != nil {
			ch3, _ = conn3.Channel()
			return false
		}
		msg = m
		return ok
	}, time.Minute, 200*time.Millisecond)
	assert.Equal(t, "before-kill", string(msg.Body))

	start := time.Now()
	require.NoError(t, nodes[0].StartAgain())
	require.NoError(t, c.WaitRunning(ctx, nodes...))
	t.Logf("killed node rejoined in %v", time.Since(start).Round(time.Millisecond))
	requireWebSTOMP(t, nodes[0].WebSTOMPURL(), "guest", "guest")

	start = time.Now()
	require.NoError(t, nodes[1].Stop())
	require.NoError(t, c.WaitRunning(ctx, nodes[0], nodes[2]))
	require.NoError(t, nodes[1].StartAgain())
	require.NoError(t, c.WaitRunning(ctx, nodes...))
	t.Logf("stopped node restarted and rejoined in %v", time.Since(start).Round(time.Millisecond))

	bases := c.collect((*Node).BaseDir)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "Close is idempotent")
	for i, n := range nodes {
		requireNoProcesses(t, n.Name())
		_, err := os.Stat(bases[i])
		assert.True(t, os.IsNotExist(err), "base dir left: %s", bases[i])
		l, ok := tryLockPort(portLockDir(), n.Ports().AMQP)
		assert.True(t, ok, "port reservation of %s left", n.Name())
		l.release()
	}
}
