package testbroker

import (
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// A binding whose Mnesia commit decision was still on its way to the log
// when bind-ok came back (mnesia_recover held, as a loaded scheduler delays
// it) survives a kill -9 once SyncMetadata's sync ran. Without it the
// restarted node comes back without the binding (killrepro -trap).
func TestSyncMetadataKeepsABindingAcrossKill(t *testing.T) {
	requireRabbit(t)
	n := Start(t, Options{Plugins: []string{}})
	c, err := amqp.Dial(n.AMQPURL())
	require.NoError(t, err)
	defer c.Close()
	ch, err := c.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.ExchangeDeclare("sync", amqp.ExchangeTopic, true, false, false, false, nil))
	_, err = ch.QueueDeclare("tab-sync", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, n.SyncMetadata())
	store, err := n.MetadataStore()
	require.NoError(t, err)
	t.Logf("RabbitMQ %s, metadata store %s", n.Version().Name, store)

	// killFromInside runs expr on the node and kills it with -9 from inside
	// in the same call, so no CLI round trip gives the node time of its own;
	// then it starts the node again and checks that the binding is there.
	killFromInside := func(expr, what string) {
		out, err := n.Ctl("eval", expr+`os:cmd("kill -9 " ++ os:getpid()).`)
		t.Logf("node killed itself (rabbitmqctl: %v: %.100s)", err, out)
		require.NoError(t, n.Kill())
		require.NoError(t, n.StartAgain())
		out, err = n.Ctl("list_bindings", "source_name", "destination_name", "routing_key")
		require.NoError(t, err, out)
		require.True(t, strings.Contains(out, "sync\ttab-sync\tcustomer.#"), "binding lost across kill -9 %s:\n%s", what, out)
	}

	if store == StoreKhepri {
		// No Mnesia, no commit decision on its way: bind, and kill -9 the
		// node the moment bind-ok is back.
		require.NoError(t, ch.QueueBind("tab-sync", "customer.#", "sync", false, nil))
		killFromInside("", "right after bind-ok (Khepri)")
		return
	}

	out, err := n.Ctl("eval", "sys:suspend(mnesia_recover).")
	require.NoError(t, err, out)
	require.NoError(t, ch.QueueBind("tab-sync", "customer.#", "sync", false, nil))
	// Let mnesia_recover go and sync as SyncMetadata does (without the sync
	// the binding is gone after the restart).
	killFromInside("sys:resume(mnesia_recover), "+syncMetadataExpr+", ", "after SyncMetadata")
}
