package testbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultClusterSize is the number of nodes StartCluster starts when
// ClusterOptions.Size is zero: the smallest cluster in which a quorum queue
// (replication factor 3) survives the loss of one node.
const DefaultClusterSize = 3

// ClusterOptions configure a cluster of private nodes.
type ClusterOptions struct {
	// Size is the number of nodes; default DefaultClusterSize.
	Size int
	// Node is the template for every node (plugins, config lines, user).
	// Cookie and NamePrefix are set by the cluster: one shared cookie, and
	// names <prefix>-<cluster id>-n<i>-<random>@localhost.
	Node Options
	// JoinTimeout bounds joining the nodes into one cluster. Default 5 min:
	// a join is CLI calls (stop_app, join_cluster, start_app, await_startup
	// per joining node, then cluster_status), and on a saturated 2-vCPU
	// machine one call of the 4.0.5 CLI took 7-47 s of wall time for about
	// 1.7 s of CPU (load 12-15): a 3-node join needed more than 120 s.
	JoinTimeout time.Duration
}

// Cluster is a RabbitMQ cluster of private nodes on this machine, all from
// the installed RabbitMQ: each node has its own name, ports, data and log
// directories and watchdog (see Node); all share one Erlang cookie. The nodes
// boot in parallel as single-node clusters, then every other node joins the
// first with rabbitmqctl (stop_app, join_cluster, start_app) and is waited for
// with WaitReady.
//
// Kill, Stop, StartAgain and Restart of one node are the Node's methods; a
// restarted node rejoins the cluster by itself (its Mnesia directory knows
// its peers). WaitRunning waits until the cluster sees a given set of
// running nodes.
type Cluster struct {
	nodes    []*Node
	logf     func(string, ...any)
	bootTime time.Duration
}

// StartCluster starts a cluster for the test and registers t.Cleanup to kill
// every node and remove its directory. It calls t.Fatal if the cluster does
// not form. The boot time is logged.
func StartCluster(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	if opts.Node.Logf == nil {
		opts.Node.Logf = t.Logf
	}
	c, err := NewCluster(opts)
	if err != nil {
		t.Fatalf("testbroker: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.nodes {
				t.Logf("testbroker: %s logs (tail):\n%s", n.name, n.LogTail(40))
			}
		}
		if err := c.Close(); err != nil {
			t.Errorf("testbroker: close cluster: %v", err)
		}
	})
	return c
}

// NewCluster starts a cluster and waits until every node runs in it. The
// caller must call Close. It is the non-test entry point (benchmarks).
func NewCluster(opts ClusterOptions) (*Cluster, error) {
	if opts.Size <= 0 {
		opts.Size = DefaultClusterSize
	}
	if opts.JoinTimeout <= 0 {
		opts.JoinTimeout = 5 * time.Minute
	}
	prefix := opts.Node.NamePrefix
	if prefix == "" {
		prefix = "dwscluster"
	}
	logf := opts.Node.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	id := randHex(3)
	cookie := strings.ToUpper(randHex(10))
	c := &Cluster{nodes: make([]*Node, opts.Size), logf: logf}
	start := time.Now()

	// Boot in parallel: most of a boot is the VM loading modules, and the
	// nodes do not need each other yet.
	errs := make([]error, opts.Size)
	var wg sync.WaitGroup
	for i := range opts.Size {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := opts.Node
			o.Cookie = cookie
			o.NamePrefix = fmt.Sprintf("%s-%s-n%d", prefix, id, i+1)
			c.nodes[i], errs[i] = StartNode(o)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("cluster: boot nodes: %w", err)
	}
	booted := time.Since(start)

	ctx, cancel := context.WithTimeout(context.Background(), opts.JoinTimeout)
	defer cancel()
	for _, n := range c.nodes[1:] {
		if err := n.join(ctx, c.nodes[0]); err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("cluster: %w", err)
		}
	}
	// Each joined node has passed WaitReady; the seed's view confirms
	// the membership.
	if err := c.waitView(ctx, c.nodes[:1], c.nodes); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	c.bootTime = time.Since(start)
	logf("testbroker: cluster of %d nodes ready in %v (nodes booted in parallel in %v, joined in %v): %s",
		opts.Size, c.bootTime.Round(time.Millisecond), booted.Round(time.Millisecond),
		(c.bootTime - booted).Round(time.Millisecond), strings.Join(c.Names(), ", "))
	return c, nil
}

// join makes n a member of seed's cluster and waits until n is up again.
func (n *Node) join(ctx context.Context, seed *Node) error {
	// join_cluster resets the node itself ("Before clustering, the node is
	// reset"), so no separate reset: every CLI call costs seconds here.
	for _, args := range [][]string{
		{"stop_app"},
		{"join_cluster", seed.name},
		{"start_app"},
	} {
		if out, err := n.CLIContext(ctx, "rabbitmqctl", args...); err != nil {
			return fmt.Errorf("join %s to %s: %w: %s", n.name, seed.name, err, out)
		}
	}
	// start_app restarts the plugins: wait for their listeners too.
	if err := n.WaitReady(ctx); err != nil {
		return fmt.Errorf("%s after joining %s: %w", n.name, seed.name, err)
	}
	return nil
}

// Nodes returns the cluster's nodes, in boot order (the first is the seed
// the others joined).
func (c *Cluster) Nodes() []*Node { return slices.Clone(c.nodes) }

// Node returns node i (0-based).
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// Names returns the Erlang node names.
func (c *Cluster) Names() []string { return c.collect((*Node).Name) }

// AMQPURLs returns every node's AMQP URL, for Config.URLs.
func (c *Cluster) AMQPURLs() []string { return c.collect((*Node).AMQPURL) }

// WebSTOMPURLs returns every node's Web-STOMP URL.
func (c *Cluster) WebSTOMPURLs() []string { return c.collect((*Node).WebSTOMPURL) }

func (c *Cluster) collect(f func(*Node) string) []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = f(n)
	}
	return out
}

// BootTime is how long NewCluster took from the first boot until every node
// ran in the cluster.
func (c *Cluster) BootTime() time.Duration { return c.bootTime }

// ClusterStatus is the part of "rabbitmqctl cluster_status" the tests use.
type ClusterStatus struct {
	RunningNodes []string            `json:"running_nodes"`
	DiskNodes    []string            `json:"disk_nodes"`
	Partitions   map[string][]string `json:"partitions"`
	Alarms       []json.RawMessage   `json:"alarms"`
}

// ClusterStatus asks the node via the CLI for its view of the cluster.
func (n *Node) ClusterStatus(ctx context.Context) (ClusterStatus, error) {
	var st ClusterStatus
	out, err := n.CLIContext(ctx, "rabbitmqctl", "cluster_status", "--formatter", "json")
	if err != nil {
		return st, err
	}
	// The CLI may print a banner line before the JSON document.
	if i := strings.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("cluster_status of %s: %w: %.300s", n.name, err, out)
	}
	return st, nil
}

// WaitRunning waits until every node in want reports exactly want as the
// cluster's running nodes (so a restarted node has rejoined, and a stopped
// one is known to be gone), polling cluster_status.
func (c *Cluster) WaitRunning(ctx context.Context, want ...*Node) error {
	return c.waitView(ctx, want, want)
}

// waitView waits until every observer reports exactly want as the running
// nodes.
func (c *Cluster) waitView(ctx context.Context, observers, want []*Node) error {
	names := make([]string, len(want))
	for i, n := range want {
		names[i] = n.name
	}
	slices.Sort(names)
	var last string
	for {
		ok := true
		for _, n := range observers {
			st, err := n.ClusterStatus(ctx)
			if err != nil {
				ok, last = false, err.Error()
				break
			}
			got := slices.Clone(st.RunningNodes)
			slices.Sort(got)
			if !slices.Equal(got, names) {
				ok, last = false, fmt.Sprintf("%s sees running %v", n.name, got)
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for running nodes %v: %w (last: %s)", names, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Close kills every node and removes its directory (see Node.Close). It is
// idempotent.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range c.nodes {
		if n != nil {
			errs = append(errs, n.Close())
		}
	}
	return errors.Join(errs...)
}
