package tabsession

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/amqpconn"
)

// tabIDPattern is the web client's tab id format (web/internal.js).
var tabIDPattern = regexp.MustCompile(`^[a-z0-9]{8,64}$`)

var tabIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newTabID makes a tab id like the web client's generateTabId: 16 random
// bytes as 26 lowercase base32 characters.
func newTabID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (Go >= 1.24)
	return strings.ToLower(tabIDEncoding.EncodeToString(b))
}

// queueNameKeyLabel separates the key derived from SigningKey for queue
// names from any other use of SigningKey.
const queueNameKeyLabel = "durablews tabsession queue names v1"

// queueNameKey is cfg.QueueNameKey, or a key derived from SigningKey.
func queueNameKey(cfg Config) []byte {
	if cfg.QueueNameKey != nil {
		return cfg.QueueNameKey
	}
	m := hmac.New(sha256.New, cfg.SigningKey)
	m.Write([]byte(queueNameKeyLabel))
	return m.Sum(nil)
}

// queueName is tab-<first 16 hex of HMAC-SHA256(key, user)>-<tabID>. The
// user part comes from the authenticated user, never from the client, so a
// client can only ever name queues of its own user; and it is keyed, so
// nobody without the key can tell from a queue name whose it is.
func queueName(key []byte, user, tabID string) string {
	return "tab-" + userKey(key, user) + "-" + tabID
}

// userKey is the first 16 hex characters of HMAC-SHA256(key, user).
func userKey(key []byte, user string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(user))
	return hex.EncodeToString(m.Sum(nil)[:8])
}

// queueArgs are the declare arguments of a new tab queue on a broker of
// the given version (amqpconn.BrokerVersion). A quorum tab queue never
// drops a message for having been delivered too often: a tab on a flapping
// connection gets the same message again and again, and must still get it
// (amqpconn.UnlimitedDeliveries: RabbitMQ 4.x would drop it after 20).
func queueArgs(cfg Config, brokerVersion string) amqp.Table {
	t := amqp.Table{
		"x-expires":                int64(cfg.QueueExpires / time.Millisecond),
		"x-max-length":             int64(cfg.QueueMaxLength),
		"x-overflow":               "drop-head",
		"x-single-active-consumer": true,
	}
	if cfg.QueueType == QueueQuorum {
		t["x-queue-type"] = QueueQuorum
		maps.Copy(t, amqpconn.UnlimitedDeliveries(brokerVersion))
	}
	return t
}

// ensureQueue declares the tab queue (or keeps an existing one), binds it
// to every granted binding and, with a management client, removes bindings
// that are no longer granted. created reports that the queue did not exist.
//
// An existing queue is only checked (passive declare), never declared
// again, so a queue whose arguments differ from the current config
// (QueueExpires or QueueMaxLength changed since) is kept as it is rather
// than failing the renewal.
//
// It also keeps the user within Config.MaxQueuesPerUser (deleting the
// user's least recently used tab queues beyond it, after this one is
// ready) and the queue-creation rate (429 before creating).
func (h *Handler) ensureQueue(user, queue string, granted []Binding) (created bool, err error) {
	conn, err := h.connection()
	if err != nil {
		return false, unavailable(err)
	}
	ch, err := conn.Channel()
	if err != nil && conn.IsClosed() {
		// The connection died since the last request (broker restart,
		// closed by an operator): redial once.
		if conn, err = h.connection(); err != nil {
			return false, unavailable(err)
		}
		ch, err = conn.Channel()
	}
	// brokerErr classifies a failed AMQP operation: a dead connection is
	// 503, a refused operation (404 exchange, 403 permission) is 500.
	brokerErr := func(op string, err error) error {
		refused := refusedByBroker(err)
		err = fmt.Errorf("%s: %w", op, err)
		if !refused || conn.IsClosed() {
			return unavailable(err)
		}
		return internalError(err)
	}
	if err != nil {
		return false, brokerErr("open channel", err)
	}
	defer func() { _ = ch.Close() }()
	// reopen replaces ch after the broker closed it with a channel
	// exception; on failure ch stays as it was, so the deferred Close never
	// sees a nil channel.
	reopen := func() error {
		c, err := conn.Channel()
		if err != nil {
			return brokerErr("open channel", err)
		}
		ch = c
		return nil
	}

	if err := h.checkReceiptsExchange(conn, ch); err != nil {
		var he *httpError
		if errors.As(err, &he) {
			return false, he
		}
		return false, brokerErr("check receipts exchange", err)
	}

	// A passive declare first tells whether the queue exists; a 404 closes
	// the channel, so the declare that creates it needs a new one.
	var ae *amqp.Error
	if _, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil); err == nil {
		lost, err := h.bindAll(ch, queue, granted, true, brokerErr)
		if err == nil {
			h.evict(conn, user, queue)
		}
		return lost, err
	} else if !errors.As(err, &ae) || ae.Code != amqp.NotFound {
		return false, brokerErr("check queue "+queue, err)
	} else if homeNodeDown(ae) {
		return false, queueNodeDown(queue, ae)
	}
	if wait, ok := h.userQueues.allowCreate(user); !ok {
		return false, rateLimited(wait)
	}
	if err := reopen(); err != nil {
		return false, err
	}
	_, err = ch.QueueDeclare(queue, true, false, false, false, queueArgs(h.cfg, amqpconn.BrokerVersion(conn)))
	created = err == nil
	if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed && queueLimitError(ae) {
		return false, queueLimitReached(queue, ae)
	}
	if errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed {
		// The queue exists with other arguments (QueueType, QueueExpires
		// or QueueMaxLength changed since, and a concurrent request
		// created it between the passive check and this declare). Keep
		// it: failing would cut the tab off its messages. The channel is
		// closed; use a new one.
		refusal := ae.Reason
		if err := reopen(); err != nil {
			return false, err
		}
		_, err = ch.QueueDeclarePassive(queue, true, false, false, false, nil)
		switch {
		case err == nil:
			h.logger.Info("Tab queue exists with other arguments (QueueType, QueueExpires or QueueMaxLength changed); keeping it as is until it expires", watermill.LogFields{"queue": queue, "broker": refusal})
		case errors.As(err, &ae) && ae.Code == amqp.NotFound && !homeNodeDown(ae):
			// It does not exist either: the 406 was about something else.
			// Report that, not the 404.
			return false, internalError(fmt.Errorf("declare queue %s: the broker refused it (406 PRECONDITION_FAILED: %s), and it does not exist", queue, refusal))
		}
	}
	if errors.As(err, &ae) && homeNodeDown(ae) {
		return false, queueNodeDown(queue, ae)
	}
	if err != nil {
		return false, brokerErr("declare queue "+queue, err)
	}
	lost, err := h.bindAll(ch, queue, granted, !created, brokerErr)
	if err == nil {
		h.evict(conn, user, queue)
	}
	return created || lost, err
}

// refusedByBroker tells an operation the broker refused (a channel
// exception: 403 access refused, 404 not found, 405 resource locked, 406
// precondition failed, 530 not allowed), which retrying cannot fix, from
// a connection that failed (a reset socket, a write error, the broker
// closing the connection), which a retry on a new connection can. A write
// to a socket the network just reset fails before the connection notices
// it is closed, so IsClosed alone cannot tell them apart.
func refusedByBroker(err error) bool {
	var ae *amqp.Error
	if !errors.As(err, &ae) || !ae.Server {
		return false
	}
	switch ae.Code {
	case amqp.AccessRefused, amqp.NotFound, amqp.ResourceLocked, amqp.PreconditionFailed, amqp.NotAllowed:
		return true
	}
	return false
}

// queueLimitError tells the broker's refusal of a new queue at a queue
// limit: "cannot declare queue '…': queue limit in vhost '/' (N) is
// reached" (RabbitMQ 3.10 to 4.3; 4.x also has "queue limit in cluster").
func queueLimitError(ae *amqp.Error) bool {
	return ae.Code == amqp.PreconditionFailed && strings.Contains(ae.Reason, "queue limit")
}

// evict records a session request for user's queue and, when the user
// then holds more than Config.MaxQueuesPerUser tab queues, deletes the
// excess: the least recently used ones that no tab is reading (no
// consumer) first, and only when there are not enough of those, the least
// recently used ones that a tab reads (the cap holds even against a user
// who keeps a connection on every queue). A queue found gone is just
// forgotten. Broker work is on a channel of its own; a failure is logged
// and not the request's (the queue stays until it expires).
func (h *Handler) evict(conn *amqp.Connection, user, queue string) {
	candidates, excess := h.userQueues.use(user, queue)
	if excess == 0 {
		return
	}
	ch, err := conn.Channel()
	if err != nil {
		h.logger.Error("Tab queues over MaxQueuesPerUser not deleted: cannot open a channel; they expire after QueueExpires", err, watermill.LogFields{"queues": candidates})
		return
	}
	defer func() { _ = ch.Close() }()
	// reopen replaces ch after a channel error (ch is never left nil).
	reopen := func() bool {
		next, err := conn.Channel()
		if err != nil {
			h.logger.Error("Tab queues over MaxQueuesPerUser not deleted: cannot open a channel; they expire after QueueExpires", err, watermill.LogFields{"queues": candidates})
			return false
		}
		ch = next
		return true
	}
	var idle, read, gone []string
	for _, q := range candidates {
		if len(idle)+len(gone) == excess {
			break
		}
		info, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		var ae *amqp.Error
		switch {
		case err == nil && info.Consumers > 0:
			read = append(read, q)
		case err == nil:
			idle = append(idle, q)
		case errors.As(err, &ae) && ae.Code == amqp.NotFound && !homeNodeDown(ae):
			gone = append(gone, q) // expired or deleted meanwhile
			if !reopen() {
				return
			}
		default:
			h.logger.Error("Tab queue over MaxQueuesPerUser not checked; left alone", err, watermill.LogFields{"queue": q})
			if ch.IsClosed() && !reopen() {
				return
			}
		}
	}
	h.userQueues.drop(user, gone...)
	victims := idle
	if n := excess - len(idle) - len(gone); n > 0 {
		victims = append(victims, read[:min(n, len(read))]...)
		read = read[min(n, len(read)):]
	}
	h.userQueues.touch(user, read...) // seen in use: most recently used now
	for _, v := range victims {
		// No if-unused/if-empty: a tab still reading it loses its
		// subscription and gets a new queue at its next session request
		// (queue_created: true).
		if _, err := ch.QueueDelete(v, false, false, false); err != nil {
			h.logger.Error("Tab queue over MaxQueuesPerUser not deleted; it expires after QueueExpires", err, watermill.LogFields{"queue": v})
			if !reopen() {
				return
			}
			continue
		}
		h.userQueues.drop(user, v)
		h.logger.Info("Deleted a tab queue of a user over MaxQueuesPerUser", watermill.LogFields{"queue": v, "max_queues_per_user": h.cfg.MaxQueuesPerUser})
	}
}

// homeNodeDown tells the broker's answer for a classic queue whose node is
// down ("home node ... of durable queue ... is down or inaccessible").
//
// RabbitMQ 3.10 says "home node ... is down or inaccessible" at once; 4.x
// tries for about a minute and says "failed to perform operation on queue
// ... due to timeout" (ensureQueueWithin answers before that).
func homeNodeDown(ae *amqp.Error) bool {
	return ae.Code == amqp.NotFound && (strings.Contains(ae.Reason, "is down or inaccessible") ||
		strings.Contains(ae.Reason, "due to timeout"))
}

// queueNodeDown is the 503 for a classic tab queue whose node is down: the
// queue (and its messages) come back with the node, so the client retries;
// meanwhile nothing can be read from it, and nothing routed to it is kept.
func queueNodeDown(queue string, ae *amqp.Error) *httpError {
	e := unavailable(fmt.Errorf("tab queue %s: its node is down (classic queues live on one node; QueueType %q survives that): %s", queue, QueueQuorum, ae.Reason))
	e.message = "the broker node holding this tab's queue is down; retry later"
	return e
}
