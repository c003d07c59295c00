package tabsession

import (
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// tabQueuesWithin is tabQueues bounded by Config.BrokerTimeout (see
// ensureQueueWithin).
func (h *Handler) tabQueuesWithin(user string, tabs []string) ([]TabGrant, []string, *httpError) {
	if len(tabs) == 0 {
		return nil, nil, nil
	}
	type result struct {
		joined  []TabGrant
		missing []string
		err     *httpError
	}
	done := make(chan result, 1)
	h.brokerOps.Add(1)
	go func() {
		defer h.brokerOps.Done()
		j, m, err := h.tabQueues(user, tabs)
		done <- result{j, m, err}
	}()
	timer := time.NewTimer(h.cfg.BrokerTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.joined, r.missing, r.err
	case <-timer.C:
		return nil, nil, brokerTimedOut(fmt.Sprintf("of %d other tabs", len(tabs)), h.cfg.BrokerTimeout)
	}
}

// tabQueues finds which of the user's tabs have a queue (passive declare:
// nothing is created or changed; each tab's queue is made by that tab's own
// session request). The names derive from the authenticated user and the
// tab id (queueName), never from the request, so a leader's token can only
// ever read its own user's queues: another user's tab id names a queue in
// this user's namespace, which does not exist. Found queues count as used
// (MaxQueuesPerUser evicts the least recently used).
func (h *Handler) tabQueues(user string, tabs []string) (joined []TabGrant, missing []string, herr *httpError) {
	conn, err := h.connection()
	if err != nil {
		return nil, nil, unavailable(err)
	}
	brokerErr := func(op string, err error) *httpError {
		err = fmt.Errorf("%s: %w", op, err)
		if conn.IsClosed() || errors.Is(err, amqp.ErrClosed) {
			return unavailable(err)
		}
		return internalError(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		return nil, nil, brokerErr("open channel", err)
	}
	defer func() { _ = ch.Close() }()
	var found []string
	for _, id := range tabs {
		q := queueName(h.nameKey, user, id)
		_, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
		var ae *amqp.Error
		switch {
		case err == nil:
			joined = append(joined, TabGrant{TabID: id, Queue: q, Destination: "/amq/queue/" + q})
			found = append(found, q)
		case errors.As(err, &ae) && ae.Code == amqp.NotFound:
			missing = append(missing, id)
			// The 404 closed the channel.
			c, err := conn.Channel()
			if err != nil {
				return nil, nil, brokerErr("open channel", err)
			}
			ch = c
		default:
			return nil, nil, brokerErr("check tab queue "+q, err)
		}
	}
	h.userQueues.touch(user, found...)
	return joined, missing, nil
}
