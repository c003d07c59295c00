// Package receipts reads the delivery receipts browser tabs send back to
// the service, and waits for them.
//
// # What a receipt proves
//
// A receipt is a tab's statement "the handler(s) of message M ran and
// resolved in tab T, and M was acked there". The browser client sends it
// after a handler resolved AND the ACK frame was written; not for a
// message parked, nacked, dropped as stale or dropped by onError 'ack',
// and not again for a duplicate its de-duplication window recognises. It
// does not prove that a person saw the message: a tab in a background
// window handles messages too. Use receipts to know a message reached the
// page (or to fall back to e-mail or a push notification when it did
// not), not as read receipts.
//
// # The wire
//
// A tab sends one STOMP SEND per batch of receipts to the receipts
// exchange (DefaultExchange, a durable topic exchange the service
// declares with DeclareExchange), with the routing key
// "<userKey>.<tabId>" (RoutingKey):
//
//	SEND
//	destination:/exchange/durablews.receipts/<userKey>.<tabId>
//	content-type:application/json
//	persistent:true
//	x-durablews-receipts:1
//	receipt:<unique id>
//
//	{"v":1,"tab":"<tabId>","receipts":[{"id":"<message id>","sub":"<subscription>","at":<ms since epoch>}, ...]}
//
// "id" is the message id the tab de-duplicates by, which is the Watermill
// UUID the durablews Publisher sent. A receipt of a stream subscription
// also has "stream" and "offset". With tab sessions (package tabsession)
// userKey is the user's key (Handler.UserKey) and the tab's token allows
// writing with exactly that routing key, so the user key and tab id of a
// receipt come from the routing key, never from the body: a body whose
// "tab" differs is refused (ErrTabMismatch). DecodeBatch reads a batch;
// EncodeBatch and NewPublishing write one exactly as the browser does, for
// Go test tabs and benchmarks.
//
// # Reading receipts
//
// A Subscriber (a Watermill message.Subscriber) consumes the service's
// durable receipts queue, so receipts sent while the service is down wait
// for it. It hands out one message per receipt (FromMessage reads it) and
// acks a batch once all its receipts are acked:
//
//	sub, err := receipts.NewSubscriber(receipts.Config{
//		URL:   "amqp://guest:guest@127.0.0.1:5672/",
//		Queue: "orders.receipts",
//	}, logger)
//	...
//	msgs, err := sub.Subscribe(ctx, "#") // the binding key: every receipt
//
// A Tracker on top of it drops duplicates, remembers receipts for a while
// (TrackerConfig.Retention) and answers:
//
//	tracker, err := receipts.NewTracker(receipts.TrackerConfig{Subscriber: sub}, logger)
//	...
//	rs, err := tracker.WaitTabs(ctx, msg.UUID, 1)         // one tab handled it
//	r, err := tracker.WaitUser(ctx, msg.UUID, userKey)     // one of this user's tabs did
//	tracker.ExpectUser(msg.UUID, userKey, time.Minute, func(id string) {
//		sendEmail(user, id) // no tab of the user handled it within a minute
//	})
//
// A Router's forward can wait too: durablews.Forward.Receipts (with the
// Tracker) holds the source message's ack until tabs sent receipts for
// what was forwarded, and fails with durablews.ErrNoReceipt otherwise.
//
// # Guarantees and limits
//
// Receipts are at least once: a tab sends a batch again until the broker
// confirmed it (its RECEIPT frame), and a batch that was not acked when a
// service instance stopped is delivered again. The Tracker counts each
// (message id, tab id) once while it keeps it, so WaitTabs counts
// different tabs. A receipt only arrives if the tab was able to send it:
// a tab closed right after handling a message may take its receipt with
// it until the page is opened again (the client keeps pending receipts in
// sessionStorage).
//
// Instances of one service that share a Config.Queue compete for its
// receipts: each receipt reaches one of them, and a Tracker knows only the
// receipts its own Subscriber consumed. A service whose instances wait
// (WaitUser, WaitTabs, Expect) must route the wait to the instance that
// consumes, or give each instance a queue of its own (each then gets every
// receipt; a queue per instance that goes away should have x-expires, via
// Config.QueueArguments).
//
// # A lost connection
//
// The Subscriber consumes with amqp091-go on one connection, a channel per
// subscription. When the connection is lost it dials again after 100 ms,
// then after twice as long each time up to 5 s (each wait jittered to
// half to all of that), until a dial succeeds or Close; each dial is
// bounded (30 s, or the URL's connection_timeout). Each subscription then
// opens a new channel, declares the exchange and the queue again, binds
// it and consumes again (with the same back-off when only its channel was
// lost). A batch whose channel was lost is never acked on the new one:
// the subscription stops waiting for its receipts' acks, the broker puts
// it back and delivers it again, and the Tracker drops the receipts it
// already recorded. While the Subscriber reconnects the subscription's
// channel stays open (no message comes); Subscribe and
// SubscribeInitialize fail. Close returns within a few seconds also
// while the broker is unreachable, and leaves no goroutine behind.
package receipts
