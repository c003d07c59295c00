// Package durablews delivers events from Go services to browser tabs with a
// delivery guarantee: a message whose Publish returned nil reaches every tab
// that subscribed to it, even if the tab was offline for a while, the
// network flapped or the broker restarted.
//
// # How it works
//
// The Go side publishes Watermill messages through a Publisher to durable
// RabbitMQ exchanges, as persistent messages, and waits for publisher
// confirms. Each browser tab subscribes over RabbitMQ's Web-STOMP plugin to
// its own durable, auto-expiring queue bound to the exchange (the client in
// web/ does this), and acks every message after the page has handled it.
// Unacked messages stay in the tab's queue while it is away and come back
// when it reconnects.
//
// # Publishing
//
// A Watermill topic maps onto a named durable exchange (Config.Exchanges, or
// Config.ExchangeFor for generated topic names); the routing key of each
// message comes from its metadata (RoutingKeyMetadataKey) or from
// Config.RoutingKey:
//
//	cfg := durablews.NewConfig("amqp://guest:guest@127.0.0.1:5672/", durablews.Exchange{Name: "events"})
//	pub, err := durablews.NewPublisher(cfg, logger)
//	...
//	msg := message.NewMessage(watermill.NewUUID(), payload)
//	msg.Metadata.Set(durablews.RoutingKeyMetadataKey, "customer.42.order_paid")
//	err = pub.Publish("events", msg)
//
// Publish pipelines: all messages of a call, and of concurrent calls, are in
// flight together, so confirmed throughput is bounded by the broker, not by
// round trips. An error is a *PublishError naming each unconfirmed message
// and why (ErrNacked, ErrUnroutable, ErrConfirmTimeout, ErrConnectionLost,
// ErrInvalidMessage, ErrUnknownTopic, ErrPublisherClosed, ...), except
// ErrPublisherClosed itself for a call with no messages after Close. Publisher.Ping and Publisher.Connected tell a
// readiness probe whether the publisher is connected.
//
// # On a RabbitMQ cluster
//
// Give the Publisher every node and use NewClusterConfig:
//
//	cfg := durablews.NewClusterConfig([]string{url1, url2, url3}, durablews.Exchange{Name: "events"})
//
// Each Publisher shuffles the URLs once, so a fleet spreads over the
// nodes, and moves on to the next node when its connection is lost,
// republishing what was unconfirmed. While a quorum queue elects a new
// leader (a node died or restarted) the broker nacks what is routed to it;
// the preset retries those messages with the same id until
// Config.ConfirmTimeout, so a caller sees ErrNacked only if the cluster
// could not take the message in time. Mandatory is on because a classic
// queue whose node is down silently drops what is routed only to it.
// Config.OnConnect runs on every new connection before anything is
// (re)published on it: re-assert the topology there, or wait for a stream
// to recover (broadcast.WaitReady).
//
// # Wire format
//
// DefaultMarshaler writes persistent messages whose AMQP message_id is the Watermill
// UUID (the browser sees it as amqp-message-id and drops redeliveries by it)
// and whose metadata become string headers; the UUID is also in the
// _watermill_message_uuid header, so watermill-amqp's DefaultMarshaler reads
// it too. It implements watermill-amqp's Marshaler;
// Config.WatermillAMQPConfig gives a watermill-amqp configuration that
// shares exchanges and wire format with the Publisher (Watermill's pubsub
// test suite passes with that pair).
//
// # Other packages
//
// Package tabsession gives each browser tab its own server-declared queue
// and a token that can read only that queue (per-user access control);
// package broadcast declares RabbitMQ streams for events many tabs share
// (each message stored once, every tab reading from its own offset) and
// tells a page where in a stream to start; package receipts reads the
// delivery receipts browser tabs send back (the handler ran and the
// message was acked in that tab) from a durable queue, and its Tracker
// waits for them or calls a fallback when none came, which
// Forward.Receipts uses to hold a source message's ack until tabs
// confirmed; package prommetrics has Prometheus metrics for a Publisher
// (an Observer). The publisher depends on none of them but receipts
// (for the Receipt type Forward.Receipts returns).
//
// # Guarantees and limits
//
// Delivery to each tab queue is at least once: a message whose confirm was
// lost with a connection is republished, and a tab that disconnects before
// acking gets the message again; the browser client de-duplicates by
// message id. See the README's Guarantees section for ordering and broker
// loss.
package durablews
