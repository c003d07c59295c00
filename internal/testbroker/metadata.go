package testbroker

import (
	"fmt"
	"strings"
)

// SyncMetadata makes every queue, exchange and binding change the node has
// acknowledged so far survive a kill -9.
//
// RabbitMQ 3.10.8 keeps these records in Mnesia. A change that writes a disc
// table and a RAM table in one transaction (a durable queue's declare, a
// binding to a durable queue) is committed with Mnesia's asym_trans
// protocol: the commit record is logged (presume_abort) and the broker
// fsyncs the log before it answers declare-ok or bind-ok, but the
// "committed" decision is logged afterwards by the mnesia_recover process,
// through disk_log's write cache, which reaches the file up to 2 s later.
// A kill -9 before that makes the restarted node treat the transaction as
// aborted: the queue or binding is gone although the client was told it
// exists. "go run ./internal/testbroker/cmd/killrepro -trap" shows it.
//
// A test that kills a node to test something else calls SyncMetadata after
// its setup, so the kill cannot undo the setup itself. It waits until
// mnesia_recover has handled every decision sent to it so far, then syncs
// the transaction log.
//
// On Khepri (RabbitMQ 4.3's default metadata store) there is nothing to
// sync: a change is a command in Ra's log, which the node fsyncs before it
// applies the change and answers (TestSyncMetadataKeepsABindingAcrossKill
// kills the node right after bind-ok there).
func (n *Node) SyncMetadata() error {
	store, err := n.MetadataStore()
	if err != nil || store == StoreKhepri {
		return err
	}
	out, err := n.Ctl("eval", syncMetadataExpr+".")
	if err != nil {
		return fmt.Errorf("sync the Mnesia transaction log: %w: %s", err, out)
	}
	if got := strings.TrimSpace(out); got != "ok" {
		return fmt.Errorf("sync the Mnesia transaction log: rabbitmqctl eval returned %q, want ok", got)
	}
	return nil
}

// Metadata stores (MetadataStore).
const (
	StoreMnesia = "mnesia"
	StoreKhepri = "khepri"
)

// MetadataStore says where the node keeps queues, exchanges and bindings:
// StoreMnesia (RabbitMQ 3.x, and 4.0 unless the khepri_db feature flag is
// on) or StoreKhepri (4.3's default).
func (n *Node) MetadataStore() (string, error) {
	out, err := n.Ctl("eval", `case code:ensure_loaded(rabbit_khepri) of {module, _} -> rabbit_khepri:is_enabled(); _ -> false end.`)
	if err != nil {
		return "", fmt.Errorf("ask the node for its metadata store: %w: %s", err, out)
	}
	switch strings.TrimSpace(out) {
	case "true":
		return StoreKhepri, nil
	case "false":
		return StoreMnesia, nil
	}
	return "", fmt.Errorf("ask the node for its metadata store: rabbit_khepri:is_enabled() said %q", out)
}

// syncMetadataExpr waits for mnesia_recover to log the decisions sent to it
// so far (a system message is handled after the casts before it), then
// flushes and fsyncs the transaction log; it evaluates to ok.
const syncMetadataExpr = "sys:get_state(mnesia_recover), disk_log:sync(latest_log)"
