package tabsession

import (
	"fmt"
	"time"
)

// ensureQueueWithin is ensureQueue bounded by Config.BrokerTimeout. Past
// it the request answers 503 and the operation finishes on its own (the
// broker answers in the end, or Close ends it by closing the connection):
// amqp091-go's operations take no context, and RabbitMQ 4.x holds a
// declare of a classic queue whose node is down for about a minute.
func (h *Handler) ensureQueueWithin(user, queue string, granted []Binding) (created bool, err error) {
	type result struct {
		created bool
		err     error
	}
	done := make(chan result, 1)
	h.brokerOps.Add(1)
	go func() {
		defer h.brokerOps.Done()
		c, err := h.ensureQueue(user, queue, granted)
		done <- result{c, err}
	}()
	timer := time.NewTimer(h.cfg.BrokerTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.created, r.err
	case <-timer.C:
		return false, brokerTimedOut(queue, h.cfg.BrokerTimeout)
	}
}

// brokerTimedOut is the 503 for a queue operation the broker did not answer
// within BrokerTimeout: most often a classic tab queue whose node is down
// (RabbitMQ 4.x), or an overloaded node.
func brokerTimedOut(queue string, d time.Duration) *httpError {
	e := unavailable(fmt.Errorf("tab queue %s: the broker did not answer within BrokerTimeout %v (the queue's node may be down: classic queues live on one node, QueueType %q survives that; or the node is overloaded)", queue, d, QueueQuorum))
	e.message = fmt.Sprintf("the broker did not answer within %v (the node holding this tab's queue may be down); retry later", d)
	return e
}
