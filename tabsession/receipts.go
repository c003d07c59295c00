package tabsession

import (
	"errors"
	"fmt"
	"net/url"

	amqp "github.com/rabbitmq/amqp091-go"
)

// DefaultReceiptsExchange is Config.ReceiptsExchange's default, the
// exchange package receipts reads from (receipts.DefaultExchange).
const DefaultReceiptsExchange = "durablews.receipts"

// ReceiptsGrant is where a tab sends its delivery receipts (the session's
// "receipts"; see docs/receipts.md): the STOMP destination
// /exchange/<ReceiptsExchange>/<user key>.<tab id>, the only one the
// session's token may write to, and the user key, the keyed part of the
// routing key that names the user (Handler.UserKey).
type ReceiptsGrant struct {
	Destination string `json:"destination"`
	UserKey     string `json:"user_key"`
}

// receiptsRoutingKey is the routing key of a tab's receipts:
// <user key>.<tab id>. Both parts are [0-9a-z] (hex, tabIDPattern), so
// the key holds none of the '*' and '#' a scope or binding reads as a
// wildcard.
func receiptsRoutingKey(userKey, tabID string) string { return userKey + "." + tabID }

// writeScope grants publishing to exchange with exactly routingKey
// (RabbitMQ's topic authorisation: the third part of a scope is the
// routing key a publish to a topic exchange must match; without '*' in it,
// only that key matches). It grants nothing on queues and no configure.
func writeScope(resourceServerID, vhost, exchange, routingKey string) string {
	return resourceServerID + ".write:" + url.QueryEscape(vhost) + "/" + exchange + "/" + routingKey
}

// receiptsGrant is the grant of a session for user's tab tabID; nil when
// Config.Receipts is off.
func (h *Handler) receiptsGrant(userKey, tabID string) *ReceiptsGrant {
	if !h.cfg.Receipts {
		return nil
	}
	return &ReceiptsGrant{
		Destination: "/exchange/" + h.cfg.ReceiptsExchange + "/" + receiptsRoutingKey(userKey, tabID),
		UserKey:     userKey,
	}
}

// UserKey is the keyed part of user's tab queue names and receipt routing
// keys: the first 16 hex characters of HMAC-SHA256(QueueNameKey, user). A
// service that wants to know whether any tab of a user handled a message
// asks package receipts with it (Tracker.WaitUser). It does not reveal
// the user to anyone without the key.
func (h *Handler) UserKey(user string) string { return userKey(h.nameKey, user) }

// checkReceiptsExchange makes sure the receipts exchange exists and is a
// topic exchange, once per connection: topic authorisation only restricts
// the routing keys of topic exchanges, so on a direct or fanout exchange a
// tab could send receipts in another tab's name. The declare needs
// configure on the exchange for the service's user.
func (h *Handler) checkReceiptsExchange(conn *amqp.Connection, ch *amqp.Channel) error {
	if !h.cfg.Receipts {
		return nil
	}
	h.mu.Lock()
	done := h.receiptsCheckedOn == conn
	h.mu.Unlock()
	if done {
		return nil
	}
	err := ch.ExchangeDeclare(h.cfg.ReceiptsExchange, "topic", true, false, false, false, nil)
	var ae *amqp.Error
	switch {
	case errors.As(err, &ae) && ae.Code == amqp.PreconditionFailed:
		return internalError(fmt.Errorf("receipts exchange %q exists but is not a durable topic exchange (%s): tab tokens restrict receipts to the tab's own routing key, which RabbitMQ checks on topic exchanges only; delete it or set Config.ReceiptsExchange to another name", h.cfg.ReceiptsExchange, ae.Reason))
	case errors.As(err, &ae) && ae.Code == amqp.AccessRefused:
		return internalError(fmt.Errorf("declare the receipts exchange %q: the service's user needs configure on it (or declare it first with receipts.DeclareExchange): %s", h.cfg.ReceiptsExchange, ae.Reason))
	case err != nil:
		return fmt.Errorf("declare the receipts exchange %q: %w", h.cfg.ReceiptsExchange, err)
	}
	h.mu.Lock()
	h.receiptsCheckedOn = conn
	h.mu.Unlock()
	return nil
}
