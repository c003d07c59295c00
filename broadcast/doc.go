// Package broadcast declares RabbitMQ streams that carry events many
// browser tabs share (prices, a tenant's activity feed, announcements), and
// tells a page where in such a stream to start reading.
//
// Per-tab queues (the rest of durablews) copy every message into every
// tab's queue: right for what is private to a user, costly for what
// thousands of tabs share. A stream stores each message once, on disk and
// replicated; every tab reads it from its own offset, which the tab (not
// the broker) remembers. An away tab costs the broker nothing.
//
// # Declaring a stream
//
// Declare creates a durable stream bound to an existing exchange and is
// idempotent, so call it at startup and again after every reconnect (a
// queue declared just before a broker crash can be missing afterwards):
//
//	err := broadcast.Declare(ctx, conn, broadcast.Config{
//		Stream:      "prices",
//		Exchange:    "events",
//		BindingKeys: []string{"price.#"},
//		MaxAge:      24 * time.Hour,
//		MaxLengthBytes: 1 << 30,
//	})
//
// A stream without retention grows until the disk is full, so a Config
// without MaxAge or MaxLengthBytes is refused. Retention of an existing
// stream cannot be changed by declaring it again (the broker answers
// PRECONDITION_FAILED): change it with a policy (max-age,
// max-length-bytes), or delete the stream. `durablews setup -streams`
// declares streams from the command line.
//
// Publishing needs nothing new: a durablews.Publisher publishing to the
// exchange with a matching routing key gets its confirm once the stream
// has stored the message.
//
// After a broker restart, publish to a stream only once WaitReady returns:
// RabbitMQ 3.10.8 accepts connections before a stream has recovered, and
// in that window it confirmed messages routed to the stream without
// storing them (about 1,700 in the first seconds after a kill -9 in one
// measurement; some were returned as unroutable with mandatory, others
// not). Waiting for WaitReady before publishing again lost none.
//
// # Where a page starts
//
// A page rendered at time T must not miss an event published after T.
// Before reading the state it renders, the server takes a Position and
// hands it to the page with the HTML:
//
//   - EndPosition reads the stream's last chunk over AMQP: the page gets
//     {"last": N}, the offset of the first message of that chunk, and the
//     rest of the chunk is delivered again (an overlap, never a gap).
//   - TimestampPosition(t) needs no broker call: {"timestamp": S}, whole
//     seconds, rounded down; the page receives every chunk the broker wrote
//     at or after S (up to one second of overlap, plus clock skew between
//     the application and the broker).
//
// # Wire protocol for a tab (Web-STOMP, RabbitMQ 3.10.8)
//
// The tab keeps, per stream, last: the offset of the last message it
// handled (or the server's Position), in sessionStorage so that it
// survives reloads. To (re)subscribe on every (re)connect it sends
//
//	SUBSCRIBE
//	destination:/amq/queue/<stream>
//	id:<stable id, e.g. stream-<stream>>
//	ack:client-individual
//	prefetch-count:<n>             required by the broker for streams
//	x-stream-offset:offset=<last>  if last is known;
//	                timestamp=<S>  if the server gave a timestamp;
//	                next           otherwise (only what is published from now)
//
// Use /amq/queue/, not /queue/: the latter declares the stream itself and
// fails on any argument difference. Every MESSAGE frame carries
// x-stream-offset:<offset>. For each one, in order:
//
//  1. If last is known and offset <= last: ACK and drop it (already
//     handled; the first frame after a resume is usually offset == last).
//  2. Gap rule, on the first MESSAGE of a subscription only: if last is
//     known and offset > last+1, report a gap: offsets last+1 .. offset-1
//     may hold messages the tab will never get, because retention removed
//     them while it was away. Then carry on from offset.
//  3. Drop it if its amqp-message-id was handled before (a publisher retry
//     can store a message twice); otherwise handle it.
//  4. Set last = offset, store it, then ACK the frame (client-individual);
//     dropped frames are ACKed too, or the broker stops sending (credit).
//
// Never send NACK on a stream: RabbitMQ closes the channel (the whole STOMP
// session) on it. An ACK only returns credit; the broker stores nothing, so
// a tab that lost its last offset can only start again from a Position.
//
// Why subscribe at last and not last+1: offsets are not dense. The broker
// spends offsets on chunks that carry no message (one at the start of
// every segment file, for instance), so offset last+1 may hold no message,
// and the first MESSAGE after a perfectly complete resume would be last+2.
// Asking for last, which the stream still holds unless retention removed
// it, tells "nothing missed" (first offset == last) from "truncated"
// (first offset > last+1) at the cost of one repeated frame. The rule can
// only err on the safe side: when retention removed exactly up to last, a
// gap is reported that held no message.
//
// # Limits
//
// RabbitMQ 3.10.8 cannot filter a stream per consumer: every reader gets
// every message of the stream, and read access is per stream. Use streams
// for audiences that share everything, per-tab queues for private events;
// one tab can hold both kinds of subscription. Retention removes whole
// segment files (x-stream-max-segment-size-bytes, 500 MB by default), in
// the background after a new segment starts, so a stream keeps somewhat
// more than its limits say. The gap rule sees what retention removed
// while a tab was away, not what it removes while the tab reads: a tab
// reading a backlog at the very head of the stream can miss a segment
// that goes while it is still in the one before (seen with 4 KB test
// segments on 3.10.8; the offsets jump then, but so they do, less, at
// every segment start). Keep retention well above how far behind a tab
// can fall. On 3.10.8, deleting a stream while RabbitMQ still has
// retention evaluations queued for it crashes its retention process; six
// crashes in a few seconds stop the node (4.0.5 and 4.3.6 do not crash).
// A reader needs a replica of the stream on the node it is
// connected to; by default every node present at declare time gets one.
package broadcast
