package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/internal/amqpconn"
	"github.com/durablews/durablews/internal/testbroker"
)

// On a 3-node cluster, setup applies the exchanges and the policy once
// (through one node's management API; RabbitMQ replicates definitions) and
// doctor checks every node: AMQP on each -amqp-url, Web-STOMP on each
// -web-stomp-url, and the cluster's members (running, partitions).
func TestSetupDoctor_Cluster(t *testing.T) {
	t.Parallel()
	c := testbroker.StartCluster(t, testbroker.ClusterOptions{})
	n1, n3 := c.Node(0), c.Node(2)
	env := map[string]string{
		"DURABLEWS_AMQP_URL":       strings.Join(c.AMQPURLs(), ","),
		"DURABLEWS_MANAGEMENT_URL": "http://127.0.0.1:" + strconv.Itoa(n1.Ports().Management),
		"DURABLEWS_WEB_STOMP_URL":  strings.Join(c.WebSTOMPURLs(), ","),
		"DURABLEWS_EXCHANGES":      "events",
		"DURABLEWS_TIMEOUT":        "5s",
	}

	r := cli(t, env, "setup")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, "setup: 2 change(s) applied")
	// The policy is the cluster's: node 3's management API sees it.
	_, err := mgmtClient(t, n3).GetPolicy("/", defaultPolicyName)
	require.NoError(t, err, "policy applied through node 1 is visible on node 3")

	r = cli(t, env, "doctor")
	require.Equal(t, exitOK, r.code, r.stdout)
	assert.Contains(t, r.stdout, "cluster           3 nodes running, no partitions: ")
	for _, u := range c.WebSTOMPURLs() {
		assert.Contains(t, r.stdout, "ok    web-stomp         "+u+": WebSocket + STOMP CONNECT ok")
	}
	for _, name := range c.Names() {
		assert.Contains(t, r.stdout, name)
	}

	// One Web-STOMP URL for three nodes: said, not failed.
	one := map[string]string{}
	for k, v := range env {
		one[k] = v
	}
	one["DURABLEWS_WEB_STOMP_URL"] = n1.WebSTOMPURL()
	r = cli(t, one, "doctor")
	require.Equal(t, exitOK, r.code, r.stdout)
	assert.Contains(t, r.stdout, "browsers are told about one Web-STOMP endpoint")

	// Node 3 down: its AMQP and Web-STOMP URLs fail, and the cluster line
	// names it.
	require.NoError(t, n3.Kill())
	r = cli(t, env, "doctor")
	require.Equal(t, exitFail, r.code, r.stdout)
	assert.Contains(t, r.stdout, "FAIL  cluster           1 of 3 nodes down: "+n3.Name())
	assert.Contains(t, r.stdout, "FAIL  broker            "+amqpconn.RedactURL(n3.AMQPURL()))
	assert.Contains(t, r.stdout, "FAIL  web-stomp         "+n3.WebSTOMPURL())
	assert.Contains(t, r.stdout, "a cluster node is down")
}
