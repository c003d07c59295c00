// Package tabsession lets logged-in browser tabs read their own messages
// from RabbitMQ over Web-STOMP, with no broker credential that could reach
// other users' data.
//
// Mount a Handler at a path of the application's origin. For each request
// it authenticates the application's user (Config.Authenticate), asks which
// bindings the user may have (Config.Bindings), declares the tab's queue
// with the service's own AMQP user — durable, x-expires,
// x-single-active-consumer, bounded by x-max-length with drop-head — binds
// it, and returns a short-lived JWT whose only scope is read on that queue
// (and on the broadcast streams Config.Streams allows).
// RabbitMQ's OAuth 2 backend verifies the token
// (scripts/rabbitmq-tab-sessions.sh configures a broker). A tab holding it
// can consume and ack its queue, and nothing else: no declare, no bind, no
// SEND, no other queue. README.md in this directory has the threat model.
//
//	sessions, err := tabsession.NewHandler(tabsession.Config{
//		AMQPURL:      "amqp://svc:secret@127.0.0.1:5672/",
//		WebSTOMPURL:  "wss://events.example.com/ws",
//		SigningKey:   key, // tabsession.LoadSigningKey(path)
//		Authenticate: userFromCookie,
//		Bindings: func(ctx context.Context, user string) ([]tabsession.Binding, error) {
//			key, err := tabsession.BindingPattern(tabsession.AnyWords, "customer", user) // customer.<user>.#
//			if err != nil {
//				return nil, err
//			}
//			return []tabsession.Binding{{Exchange: "events", Key: key}}, nil
//		},
//	}, logger)
//	mux.Handle("POST /durablews/session", sessions)
//
// Build binding keys that carry user data with BindingKey and
// BindingPattern, never by concatenation: "customer." + id + ".#" with an id
// holding '.', '*' or '#' binds the tab to other users' events, and the
// broker cannot tell (it enforces the token, not how the key was made).
//
// # HTTP contract
//
// One method:
//
//	POST <path>
//	Content-Type: application/json
//	Cookie: <the application's session>      (whatever Authenticate reads)
//
//	{"tab_id": "k3xq7r2m4a6b8c2d4f6g8h2j4k", "bindings": [{"exchange": "events", "key": "customer.42.#"}]}
//
// Both fields are optional. tab_id is 8 to 64 characters of [a-z0-9] (the
// web client's generateTabId makes 26); absent or "", the server makes one
// and returns it. Keep it for the life of the tab (sessionStorage) and send
// it on every renewal: the queue is derived from the authenticated user and
// the tab id, so the same tab id gets the same queue back with the messages
// that arrived meanwhile, and no request can name another user's queue.
// bindings, if present, must be a non-empty subset of what the application
// allows (exact exchange and key); absent or null means all of them.
// Unknown fields, trailing data and bodies over 4 KiB are refused.
//
// A third optional field, "tabs": ["<tab id>", ...], is a shared-mode
// leader's request (web client, shared mode: the tabs of one browser share
// one connection held by one of them): the token then also reads the queues
// of those of the user's tabs whose queue exists (each created by that tab's
// own request), listed in the response as "tabs": [{"tab_id", "queue",
// "destination", "receipts_destination"}], and the ones without a queue as
// "missing_tabs". Each name derives from the authenticated user and the tab
// id, exactly as for tab_id, so a request can never name another user's
// queue (another user's tab id names a queue in this user's namespace). At
// most MaxQueuesPerUser ids (64 without a cap): 400 beyond. Nothing is
// created or bound for them. With Config.Receipts the token may also write
// each listed tab's receipts routing key.
//
// Success is 200 with Cache-Control: no-store and
//
//	{
//	  "v":           1,                               // Version of this JSON
//	  "tab_id":      "k3xq7r2m4a6b8c2d4f6g8h2j4k",
//	  "url":         "wss://example.com/ws",          // Config.WebSTOMPURL (or the first of WebSTOMPURLs)
//	  "urls":        ["wss://example.com/ws"],        // every node's Web-STOMP URL (Config.WebSTOMPURLs), or [url]
//	  "vhost":       "/",                             // STOMP CONNECT host header
//	  "queue":       "tab-9f86d081884c7d65-k3xq7r2m4a6b8c2d4f6g8h2j4k",
//	  "destination": "/amq/queue/tab-9f86d081884c7d65-k3xq7r2m4a6b8c2d4f6g8h2j4k",
//	  "token":       "<JWT>",                         // STOMP CONNECT passcode
//	  "expires_at":  "2026-11-25T21:40:00Z",          // token expiry (RFC 3339)
//	  "expires_in":  600,                             // seconds from now
//	  "renew_in":    450,                             // renew after this many seconds
//	  "bindings":    [{"exchange": "events", "key": "customer.42.#"}],
//	  "queue_created": false,                         // true: the queue or one of its bindings did not exist
//	  "streams":     [{"name": "prices", "destination": "/amq/queue/prices",
//	                   "start": {"last": 1234}}],     // only with Config.Streams; start: Prepare only
//	  "receipts":    {"destination": "/exchange/durablews.receipts/9f86d081884c7d65.k3xq7r2m4a6b8c2d4f6g8h2j4k",
//	                  "user_key": "9f86d081884c7d65"} // only with Config.Receipts
//	}
//
// The queue name is tab-<16 hex of HMAC-SHA256(Config.QueueNameKey,
// user)>-<tab_id>: it does not reveal the user to anyone without the key.
//
// The browser then connects to url with subprotocol v12.stomp and sends
// CONNECT with host:<vhost>, passcode:<token> and any login (the broker
// ignores it and names the connection after the token's sub, the queue
// name), and SUBSCRIBE with destination:<destination>, ack:client-individual,
// a prefetch-count and an explicit id. Do not SUBSCRIBE to /exchange/... or
// /queue/...: those declare queues and are refused. With
// x-single-active-consumer, a reconnect while the old socket is still
// half-open waits for it instead of reordering messages.
//
// Errors have a JSON body {"error": "<code>", "message": "<what to fix>"}:
//
//	400 bad_request             malformed JSON, unknown field, bad tab_id, empty bindings list,
//	                            a bad id in tabs or more than MaxQueuesPerUser of them
//	401 unauthenticated         Authenticate refused the request (log in again)
//	403 forbidden               Authenticate or Bindings refused the user; a requested
//	                            binding is not allowed; or a cross-origin browser request
//	405 method_not_allowed      not POST (Allow: POST)
//	415 unsupported_media_type  Content-Type is not application/json
//	429 too_many_requests       the request needs a new tab queue and the user created
//	                            Config.QueueCreateBurst of them within the last
//	                            QueueCreateInterval(s); retry after Retry-After seconds
//	500 internal                a callback failed or panicked, or the broker configuration
//	                            failed (the cause, with a panic's stack, is logged)
//	503 unavailable             the broker cannot be reached, or the node holding the tab's
//	                            classic queue is down; retry after Retry-After seconds
//	503 queue_limit_reached     the broker refuses new queues (the vhost's max-queues);
//	                            existing tabs are served; retry after Retry-After seconds
//
// # Queues per user
//
// A user holds at most Config.MaxQueuesPerUser tab queues (default 32) and
// creates at most Config.QueueCreateBurst of them at once, then one per
// QueueCreateInterval (default 20, then one every 3 s). A request that
// takes the user beyond the cap deletes the user's least recently used tab
// queue (by its last session request) that no tab is reading, rather than
// refusing: every page render (Prepare) and every tab makes a queue, and a
// closed tab's queue stays until it expires, so a refusing cap would lock
// an active user out of new pages for up to QueueExpires. A queue with a
// consumer is an open tab (the browser client asks for a session per
// connection, not on a timer, so a tab connected for hours has an old last
// request); it goes only when every queue of the user is being read, least
// recently used first, so the cap holds. A tab whose queue was deleted gets
// a new one at its next request, with queue_created: true. Over the creation
// rate a request that needs a new queue answers 429 (renewals are not
// limited). Both are counted per Handler in memory: see the threat model in
// README.md for what that means with several instances.
//
// # Renewal
//
// The broker checks the token when a connection is opened (CONNECT) and on
// each SUBSCRIBE; a subscription made before expires_at keeps consuming
// after it. To always have a valid token for the next reconnect, POST again
// with the same tab_id after renew_in seconds (and at once whenever a
// CONNECT fails with "Bad CONNECT", which is also what an expired token
// gets), and use the newest token for every new connection. Renewal keeps
// the queue and re-applies the bindings the user is allowed now.
// queue_created:true on a renewal means the queue was gone and has been
// created again, empty, or that a granted binding was missing and has been
// made again (Session.QueueCreated): the page may have missed messages and
// should reload its state. Spotting a missing binding needs
// Config.ManagementURL (AMQP binds are silent). Never use one tab_id in two live tabs (a
// duplicated browser tab copies sessionStorage): with a single active
// consumer the second tab would receive nothing until the first one leaves.
//
// # No gap between rendering a page and receiving
//
// A page that loads its state and then opens a session misses what was
// published in between. Handler.Prepare closes that gap: call it while
// rendering, before loading the state, and embed the Session in the page;
// the browser client starts from it (web/README.md), so every event
// published after Prepare is delivered, once. See the example of Prepare.
//
// # Delivery receipts
//
// With Config.Receipts, a tab tells the service which messages it handled:
// the browser client sends each receipt, batched, as a persistent message to
// the session's receipts destination, /exchange/<Config.ReceiptsExchange>/
// <user key>.<tab id>, and the token grants write on that exchange for
// exactly that routing key (RabbitMQ's topic authorisation), so a tab
// cannot send a receipt in another tab's or user's name, nor publish
// anywhere else. The user key is the queue name's keyed user part
// (Handler.UserKey). Package receipts consumes them on the service's side;
// docs/receipts.md has the wire format.
//
// # Broadcast streams
//
// What many tabs share (prices, a tenant's feed, announcements) belongs on
// a RabbitMQ stream (package broadcast), not in every tab's queue.
// Config.Streams names the streams a user's tabs may read:
//
//	Streams: func(ctx context.Context, user string) ([]string, error) {
//		return []string{"announcements", "tenant-" + tenantOf(user)}, nil
//	},
//
// Every session of the user then grants all of them: the token gets one
// more scope per stream, read on that stream and nothing else (no declare,
// no bind, no publish), and the session lists them as "streams" with the
// destination the browser client subscribes to (subscribe({stream})). A
// client cannot ask for more: the request has no streams field (it is
// refused as unknown), and the broker refuses a SUBSCRIBE to any stream the
// token does not name. Stream names are 1 to 255 of [A-Za-z0-9_.-] and may
// not start with "tab-" (the tab queues' names); the callback returning
// another name is a 500.
//
// Prepare also puts each stream's current end in the session
// ("start", broadcast.EndPosition, one AMQP consumer per stream, all at
// once, waiting up to Config.StreamEndWait on an empty stream): a page that
// embeds it receives everything published to the stream after it was
// rendered. Endpoint answers carry no start: a tab resumes at the offset it
// kept itself (browser client: sessionStorage), and a tab without one
// starts where its page said (or at "next"). A stream that does not exist
// makes Prepare fail with 500: declare it first (broadcast.Declare).
//
// Read access is per stream: every reader gets every message of a stream
// (RabbitMQ 3.10.8 cannot filter a stream per consumer). Keep private
// events on the tab's queue (Bindings); grant streams only to audiences
// that share everything in them.
//
// # Clusters
//
// On a RabbitMQ cluster give every node: Config.AMQPURLs (the endpoint's
// connection moves to the next node that answers when its node is lost, so
// sessions keep being served), Config.ManagementURLs, and
// Config.WebSTOMPURLs (the session's urls; the browser client moves to the
// next one when a connection fails) — or one load-balanced WebSTOMPURL.
//
// A classic tab queue lives on one node: the node of the endpoint's AMQP
// connection when the queue was first declared. While that node is down
// the queue cannot be read, a renewal answers 503 (the queue and its
// messages come back with the node), and events routed only to it are
// dropped by the broker — returned to a publisher with Mandatory, else
// confirmed and silently lost. Set Config.QueueType to QueueQuorum for tab
// queues that survive the loss of a minority of nodes: the tab reconnects
// to another node with a fresh session and gets its unacked messages again
// plus everything confirmed meanwhile. A quorum queue costs a Raft group
// per tab (slower declares, more memory per idle tab).
//
// Expiry differs between the two types under a policy that sets expires,
// like the operator policy scripts/rabbitmq-tab-sessions.sh applies to
// ^tab- queues (1 h by default; measured on RabbitMQ 3.10.8): a classic
// queue takes the lower of Config.QueueExpires and the policy's value, a
// quorum queue takes the policy's value, whatever QueueExpires says. So
// with quorum tab queues set the expiry in the policy
// (DURABLEWS_TABS_EXPIRES_MS). Quorum queues also expire late, on a timer
// of a few seconds.
//
// Changing QueueType applies to new queues only. A tab whose queue already
// exists as the other type keeps it, untouched, until it expires (a
// renewal only checks that it exists), so switching needs no migration and
// causes no declare errors; expect a mix of both types for up to the
// expiry time.
//
// # CSRF
//
// Only POST with Content-Type: application/json is served, which a
// cross-site form cannot send without a CORS preflight that this handler
// does not answer; in addition, cross-origin browser requests are refused
// (net/http.CrossOriginProtection: Sec-Fetch-Site, else Origin vs Host)
// unless listed in Config.TrustedOrigins. Do not add permissive CORS
// headers.
package tabsession
