package tabsession_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-stomp/stomp/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/oauthbroker"
	"github.com/durablews/durablews/internal/stomptab"
	"github.com/durablews/durablews/internal/testbroker"
	"github.com/durablews/durablews/tabsession"
)

func TestTabSessions(t *testing.T) {
	start := time.Now()
	// One private node for every subtest, configured by
	// scripts/rabbitmq-tab-sessions.sh itself (offline render, boot,
	// online apply).
	// Debug logging: the OAuth 2 backend says why it refused a token only
	// at debug level.
	e, cfg, apply := newOAuthEnv(t, testbroker.Options{Config: []string{"log.file.level = debug"}})
	t.Logf("node and script ready in %v; script apply said: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(apply.Stdout))
	require.Contains(t, apply.Stdout, "configured (policy;", "the script should find the boot config loaded and only set the policy")
	require.NotContains(t, apply.Stdout, "restart required")
	e = e.withHandler(t, cfg, nil)
	node, files, key, app, sessions, pub := e.node, e.files, e.key, e.app, e.sessions, e.pub

	// Sessions used across subtests.
	alice := e.open(t, "c-alice", `{"tab_id": "alicetab0000000001"}`)
	bob := e.open(t, "c-bob", `{}`)

	t.Run("positive: A's tab receives A's events", func(t *testing.T) {
		assert.Equal(t, tabsession.Version, alice.V, "the session JSON is versioned")
		assert.Equal(t, "alicetab0000000001", alice.TabID)
		assert.Regexp(t, `^tab-[0-9a-f]{16}-alicetab0000000001$`, alice.Queue)
		assert.Equal(t, "/amq/queue/"+alice.Queue, alice.Destination)
		assert.Equal(t, node.WebSTOMPURL(), alice.URL)
		assert.Equal(t, "/", alice.Vhost)
		assert.ElementsMatch(t, app.allowed["alice"], alice.Bindings)
		assert.InDelta(t, 600, alice.ExpiresIn, 1)
		assert.InDelta(t, 450, alice.RenewIn, 1)
		assert.WithinDuration(t, time.Now().Add(10*time.Minute), alice.ExpiresAt, 2*time.Second)
		assert.Regexp(t, `^[a-z2-7]{26}$`, bob.TabID, "a server-made tab id looks like the web client's")
		assert.True(t, alice.QueueCreated, "the first session creates the queue")

		claims, header := parseClaims(t, alice.Token, key)
		assert.Equal(t, oauthbroker.KeyID, header["kid"])
		assert.Equal(t, "rabbitmq.read:%2F/"+alice.Queue, claims["scope"], "the only scope: read on the tab's queue")
		assert.Equal(t, []any{"rabbitmq"}, claims["aud"])
		assert.Equal(t, alice.Queue, claims["sub"])

		// Queue as declared by the service: durable, SAC, bounded, expiring;
		// and capped by the script's operator policy.
		q := e.queueInfo(t, alice.Queue)
		t.Logf("queue: durable=%v auto_delete=%v exclusive=%v arguments=%v", q["durable"], q["auto_delete"], q["exclusive"], q["arguments"])
		assert.Equal(t, true, q["durable"])
		assert.Equal(t, false, q["auto_delete"])
		assert.Equal(t, false, q["exclusive"])
		args, _ := q["arguments"].(map[string]any)
		if qt, ok := args["x-queue-type"]; ok { // RabbitMQ 4.x names the type it gave a queue declared without one
			assert.Equal(t, "classic", qt)
			delete(args, "x-queue-type")
		}
		assert.Equal(t, map[string]any{"x-expires": 3600000.0, "x-max-length": 10000.0, "x-overflow": "drop-head", "x-single-active-consumer": true}, args)
		// The management API shows policies only once stats arrive (5 s);
		// ask the node directly.
		pol, err := node.Ctl("eval", fmt.Sprintf(`{ok, Q} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, <<"%s">>)), rabbit_amqqueue:info(Q, [operator_policy, effective_policy_definition]).`, alice.Queue))
		require.NoError(t, err)
		t.Logf("policy: %s", pol)
		assert.Contains(t, pol, `{operator_policy,<<"`+oauthbroker.PolicyName+`">>}`)
		assert.Contains(t, pol, `{<<"expires">>,3600000}`)
		assert.Contains(t, pol, `{<<"max-length">>,10000}`)

		tab := dialTab(t, alice)
		sub, err := tab.SubscribeQueue(brokertest.Ctx(t, 10*time.Second), alice.Queue, 10)
		require.NoError(t, err)
		e.publish(t, "customer.alice.order_paid", `{"user":"alice","n":1}`)
		m := nextBody(t, sub, 10*time.Second)
		assert.JSONEq(t, `{"user":"alice","n":1}`, string(m.Body))
		e.publish(t, "announcements.maintenance", `{"all":true}`)
		assert.JSONEq(t, `{"all":true}`, string(nextBody(t, sub, 10*time.Second).Body))
		require.NoError(t, tab.Close())
	})

	t.Run("renewal keeps the queue and its messages", func(t *testing.T) {
		// Published while the tab is away.
		e.publish(t, "customer.alice.while_away", `{"user":"alice","n":2}`)
		renewed := e.open(t, "c-alice", `{"tab_id": "alicetab0000000001"}`)
		assert.Equal(t, alice.Queue, renewed.Queue)
		assert.NotEqual(t, alice.Token, renewed.Token)
		assert.False(t, renewed.QueueCreated, "renewal finds the queue")
		assert.Equal(t, 1, e.ready(t, alice.Queue), "renewal must not drop queued messages")
		tab := dialTab(t, renewed)
		sub, err := tab.SubscribeQueue(brokertest.Ctx(t, 10*time.Second), renewed.Queue, 10)
		require.NoError(t, err)
		assert.JSONEq(t, `{"user":"alice","n":2}`, string(nextBody(t, sub, 10*time.Second).Body))
		require.NoError(t, tab.Close())
	})

	t.Run("refused: A's token consuming B's queue", func(t *testing.T) {
		e.publish(t, "customer.bob.secret", `{"user":"bob","secret":true}`)
		require.Equal(t, 1, e.ready(t, bob.Queue))
		w := e.watchLog(t)
		tab := dialTab(t, alice)
		sub, err := tab.SubscribeQueue(brokertest.Ctx(t, 10*time.Second), bob.Queue, 10)
		require.Error(t, err, "SUBSCRIBE to B's queue must fail")
		assert.Nil(t, sub)
		assert.ErrorIs(t, err, stomptab.ErrBrokerClosed, "3.10.8 closes the socket without the ERROR frame")
		t.Logf("client observed: %v", err)
		t.Logf("broker: %s", w.wait(t, "basic.consume", "access_refused", "access to queue '"+bob.Queue+"'", "refused for user '"+alice.Queue+"'"))
		assert.Equal(t, 1, e.ready(t, bob.Queue), "B's message must still be in B's queue: no MESSAGE went to A")
	})

	t.Run("refused: binding a queue", func(t *testing.T) {
		before := e.bindingsOf(t, alice.Queue)
		// STOMP's way to bind: SUBSCRIBE /exchange/... with the tab's queue
		// name, which (re)declares the queue first and is refused there.
		w := e.watchLog(t)
		tab := dialTab(t, alice)
		_, err := tab.Subscribe(brokertest.Ctx(t, 10*time.Second), stomptab.Sub{Exchange: "events", BindingKey: "customer.bob.#", QueueName: alice.Queue})
		require.Error(t, err)
		t.Logf("client observed (STOMP): %v", err)
		t.Logf("broker: %s", w.wait(t, "queue.declare", "access_refused", "access to queue '"+alice.Queue+"'"))
		// A plain queue.bind over AMQP with the same token.
		ch := amqpWithToken(t, node, alice.Token)
		requireAccessRefused(t, ch.QueueBind(alice.Queue, "customer.bob.#", "events", false, nil), "access to queue '"+alice.Queue+"'")
		assert.ElementsMatch(t, before, e.bindingsOf(t, alice.Queue), "no binding was added")
	})

	t.Run("refused: declaring a queue", func(t *testing.T) {
		fresh := strings.Replace(alice.Queue, "alicetab0000000001", "alicetab0000000002", 1) // own namespace, even
		w := e.watchLog(t)
		tab := dialTab(t, alice)
		_, err := tab.Subscribe(brokertest.Ctx(t, 10*time.Second), stomptab.Sub{Exchange: "events", BindingKey: "customer.alice.#", QueueName: fresh})
		require.Error(t, err)
		t.Logf("client observed (STOMP): %v", err)
		t.Logf("broker: %s", w.wait(t, "queue.declare", "access_refused", "access to queue '"+fresh+"'"))
		ch := amqpWithToken(t, node, alice.Token)
		_, err = ch.QueueDeclare("evil-unbounded", true, false, false, false, nil)
		requireAccessRefused(t, err, "access to queue 'evil-unbounded'")
		assert.False(t, e.queueExists(t, fresh))
		assert.False(t, e.queueExists(t, "evil-unbounded"))
	})

	t.Run("refused: SEND to any exchange", func(t *testing.T) {
		for _, dest := range []string{"/exchange/events/customer.bob.forged", "/amq/queue/" + alice.Queue, "/topic/anything"} {
			t.Run(dest, func(t *testing.T) {
				bobBefore := e.ready(t, bob.Queue)
				w := e.watchLog(t)
				conn, err := rawSTOMP(t, alice.URL, alice.Vhost, alice.Token)
				require.NoError(t, err)
				err = conn.Send(dest, "application/json", []byte(`{"forged":true}`), stomp.SendOpt.Receipt)
				require.Error(t, err, "SEND with receipt must fail")
				t.Logf("client observed: %v", err)
				exchange := map[bool]string{true: "events", false: "amq.default"}[strings.HasPrefix(dest, "/exchange/")]
				if strings.HasPrefix(dest, "/topic/") {
					exchange = "amq.topic"
				}
				t.Logf("broker: %s", w.wait(t, "access_refused", "access to exchange '"+exchange+"'"))
				assert.Equal(t, bobBefore, e.ready(t, bob.Queue))
			})
		}
		assert.Equal(t, 0, e.ready(t, alice.Queue), "nothing reached A's own queue either")
	})

	t.Run("refused: CONNECT with an expired token", func(t *testing.T) {
		short := cfg
		short.TokenTTL = 3 * time.Second // long enough to CONNECT and SUBSCRIBE on a loaded machine
		ss, err := tabsession.NewHandler(short, nil)
		require.NoError(t, err)
		defer func() { require.NoError(t, ss.Close()) }()
		rec := serveDirect(ss, "c-alice", `{"tab_id":"alicetab0000000003"}`)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var s tabsession.Session
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &s))

		tab := dialTab(t, s)
		sub, err := tab.SubscribeQueue(brokertest.Ctx(t, 10*time.Second), s.Queue, 10)
		require.NoError(t, err)
		time.Sleep(time.Until(s.ExpiresAt) + 1500*time.Millisecond)
		e.publish(t, "customer.alice.after_expiry", `{"user":"alice","n":3}`)
		if v := node.Version().Name; v == "3.10" || v == "4.0" {
			// Opened before expiry: keeps consuming after it (documented limit).
			assert.JSONEq(t, `{"user":"alice","n":3}`, string(nextBody(t, sub, 10*time.Second).Body),
				"a consumer started before expiry keeps receiving after it")
		} else {
			// 4.3 ends the connection when its token expires; the browser
			// client reconnects with a new session, and the message waits.
			_, err := sub.Next(brokertest.Ctx(t, 10*time.Second))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "Credential expired", "RabbitMQ %s closes a connection whose token expired", v)
			t.Logf("RabbitMQ %s at token expiry: %v", v, err)
			assert.Equal(t, 1, e.ready(t, s.Queue), "the message waits in the tab's queue for its next connection")
			e.deleteQueue(t, s.Queue)
		}
		_ = tab.Close()
		// The tab of the first subtest's queue got the message too: drain it.
		drain := dialTab(t, e.open(t, "c-alice", `{"tab_id":"alicetab0000000001"}`))
		dsub, err := drain.SubscribeQueue(brokertest.Ctx(t, 10*time.Second), alice.Queue, 10)
		require.NoError(t, err)
		nextBody(t, dsub, 10*time.Second)
		require.NoError(t, drain.Close())

		w := e.watchLog(t)
		_, err = stomptab.Dial(brokertest.Ctx(t, 10*time.Second), stomptab.Options{URL: s.URL, Login: "", Passcode: s.Token})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "Bad CONNECT")
		t.Logf("client observed: %v", err)
		t.Logf("broker: %s", w.wait(t, "Provided JWT token has expired"))
	})

	t.Run("refused: CONNECT with forged tokens", func(t *testing.T) {
		claims, header := parseClaims(t, alice.Token, key)
		resign := func(c jwt.MapClaims, kid any, k []byte) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
			if kid != nil {
				tok.Header["kid"] = kid
			}
			s, err := tok.SignedString(k)
			require.NoError(t, err)
			return s
		}
		otherKey := make([]byte, 32)
		_, _ = rand.Read(otherKey)
		forBob := jwt.MapClaims{}
		for k, v := range claims {
			forBob[k] = v
		}
		forBob["scope"] = "rabbitmq.read:%2F/" + bob.Queue
		forBob["sub"] = bob.Queue

		// Tampered: alice's header and signature, payload with B's queue.
		parts := strings.Split(alice.Token, ".")
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		require.NoError(t, err)
		tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(bytes.ReplaceAll(payload, []byte(alice.Queue), []byte(bob.Queue))) + "." + parts[2]
		noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, forBob).SignedString(jwt.UnsafeAllowNoneSignatureType)
		require.NoError(t, err)
		wideScope := jwt.MapClaims{}
		for k, v := range claims {
			wideScope[k] = v
		}
		wideScope["scope"] = "rabbitmq.read:%2F/* rabbitmq.write:%2F/* rabbitmq.configure:%2F/*"

		for _, tc := range []struct{ name, token, reason string }{
			{"signed by another key", resign(forBob, header["kid"], otherKey), "signature_invalid"},
			{"tampered scope (B's queue, A's signature)", tampered, "signature_invalid"},
			{"widened scope, A's signature", func() string {
				p := strings.Split(alice.Token, ".")
				body, _ := json.Marshal(wideScope)
				return p[0] + "." + base64.RawURLEncoding.EncodeToString(body) + "." + p[2]
			}(), "signature_invalid"},
			// 3.x: the key id is not configured. 4.x tries to download the
			// key from the provider's JWKS endpoint, of which there is none;
			// 4.x prints its reason (missing_oauth_provider_attributes) on the lines after.
			{"unknown kid", resign(forBob, "attacker-key", otherKey), map[bool]string{true: "key_not_found", false: ""}[strings.HasPrefix(node.Version().Name, "3.")]},
			{"alg none", noneTok, "signature_invalid"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				w := e.watchLog(t)
				_, err := stomptab.Dial(brokertest.Ctx(t, 10*time.Second), stomptab.Options{URL: alice.URL, Login: "", Passcode: tc.token})
				require.Error(t, err)
				assert.Contains(t, err.Error(), "Bad CONNECT")
				t.Logf("client observed: %v", err)
				t.Logf("broker: %s", w.wait(t, "OAuth 2/JWT token failed", tc.reason))
				t.Logf("broker: %s", w.wait(t, "STOMP login failed", "authentication failed"))
			})
		}
		assert.Equal(t, 1, e.ready(t, bob.Queue), "B's message is still unread")
	})

	t.Run("refused: tab token on the management API", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, node.ManagementURL()+"/api/queues", nil)
		require.NoError(t, err)
		req.SetBasicAuth("tab", alice.Token)
		w := e.watchLog(t)
		resp, err := e.client.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a tab token carries no management tag")
		t.Logf("broker: %s", w.wait(t, "HTTP access denied", "Not management user"))
	})

	t.Run("refused by the application: 401 and 403", func(t *testing.T) {
		r := e.request(t, http.MethodPost, "", "application/json", `{}`)
		assert.Equal(t, http.StatusUnauthorized, r.status)
		assert.Equal(t, "unauthenticated", r.errBody.Error)
		t.Logf("no cookie: %d %s", r.status, r.raw)
		r = e.request(t, http.MethodPost, "c-stolen-or-expired", "application/json", `{}`)
		assert.Equal(t, http.StatusUnauthorized, r.status)
		r = e.request(t, http.MethodPost, "c-mallory", "application/json", `{}`)
		assert.Equal(t, http.StatusForbidden, r.status)
		assert.Equal(t, "forbidden", r.errBody.Error)
		t.Logf("banned user: %d %s", r.status, r.raw)
		r = e.request(t, http.MethodPost, "c-alice", "application/json", `{}`, [2]string{"Sec-Fetch-Site", "cross-site"}, [2]string{"Origin", "https://evil.example"})
		assert.Equal(t, http.StatusForbidden, r.status, "cross-origin browser request")
		t.Logf("cross-site: %d %s", r.status, r.raw)
	})

	t.Run("refused: a binding the application does not allow", func(t *testing.T) {
		for _, body := range []string{
			`{"tab_id":"alicetab0000000004","bindings":[{"exchange":"events","key":"customer.bob.#"}]}`,
			`{"tab_id":"alicetab0000000004","bindings":[{"exchange":"events","key":"customer.alice.#"},{"exchange":"events","key":"#"}]}`,
			`{"tab_id":"alicetab0000000004","bindings":[{"exchange":"amq.rabbitmq.trace","key":"#"}]}`,
		} {
			r := e.request(t, http.MethodPost, "c-alice", "application/json", body)
			assert.Equal(t, http.StatusForbidden, r.status, body)
			assert.Contains(t, r.errBody.Message, "binding not allowed")
			t.Logf("%s -> %d %s", body, r.status, strings.TrimSpace(r.raw))
		}
		assert.False(t, e.queueExists(t, strings.Replace(alice.Queue, "alicetab0000000001", "alicetab0000000004", 1)), "no queue was declared")
		// A subset that is allowed works and binds only that.
		s := e.open(t, "c-alice", `{"tab_id":"alicetab0000000005","bindings":[{"exchange":"events","key":"announcements.#"}]}`)
		assert.Equal(t, []tabsession.Binding{{Exchange: "events", Key: "announcements.#"}}, s.Bindings)
		assert.Equal(t, []string{"events announcements.#"}, e.bindingsOf(t, s.Queue))
		e.deleteQueue(t, s.Queue)
	})

	t.Run("revoked binding is removed at renewal", func(t *testing.T) {
		s := e.open(t, "c-alice", `{"tab_id":"alicetab0000000006"}`)
		assert.ElementsMatch(t, []string{"events customer.alice.#", "events announcements.#"}, e.bindingsOf(t, s.Queue))
		app.setAllowed("alice", tabsession.Binding{Exchange: "events", Key: "customer.alice.#"})
		defer app.setAllowed("alice", tabsession.Binding{Exchange: "events", Key: "customer.alice.#"}, tabsession.Binding{Exchange: "events", Key: "announcements.#"})
		s = e.open(t, "c-alice", `{"tab_id":"alicetab0000000006"}`)
		assert.Equal(t, []string{"events customer.alice.#"}, e.bindingsOf(t, s.Queue))
		e.deleteQueue(t, s.Queue)
	})

	t.Run("isolation: A never receives B's messages", func(t *testing.T) {
		require.Equal(t, 0, e.ready(t, alice.Queue), "A's queue starts empty")
		// Drain B's queue of the earlier secret first, through B's tab.
		btab := dialTab(t, bob)
		bsub, err := btab.SubscribeQueue(brokertest.Ctx(t, 10*time.Second), bob.Queue, 50)
		require.NoError(t, err)
		assert.JSONEq(t, `{"user":"bob","secret":true}`, string(nextBody(t, bsub, 10*time.Second).Body))
		atab := dialTab(t, alice)
		asub, err := atab.SubscribeQueue(brokertest.Ctx(t, 10*time.Second), alice.Queue, 50)
		require.NoError(t, err)

		const perUser = 250
		msgs := make([]*message.Message, 0, 2*perUser)
		for i := range perUser {
			for _, u := range []string{"alice", "bob"} {
				m := message.NewMessage(watermill.NewUUID(), fmt.Appendf(nil, `{"user":%q,"n":%d}`, u, i))
				m.Metadata.Set(durablews.RoutingKeyMetadataKey, fmt.Sprintf("customer.%s.event_%d", u, i))
				msgs = append(msgs, m)
			}
		}
		// A message for no one, and one for a third customer.
		extra := message.NewMessage(watermill.NewUUID(), []byte(`{"user":"carol"}`))
		extra.Metadata.Set(durablews.RoutingKeyMetadataKey, "customer.carol.event")
		require.NoError(t, pub.Publish("events", append(msgs, extra)...))

		count := func(sub *stomptab.Subscription, want string) (own, foreign int) {
			for {
				m, err := sub.Next(brokertest.Ctx(t, 3*time.Second)) // 3 s of silence ends the count
				if errors.Is(err, context.DeadlineExceeded) {
					return
				}
				require.NoError(t, err)
				require.NoError(t, sub.Ack(m))
				var body struct{ User string }
				require.NoError(t, json.Unmarshal(m.Body, &body))
				if body.User == want {
					own++
				} else {
					foreign++
				}
			}
		}
		var aOwn, aForeign, bOwn, bForeign int
		var wg sync.WaitGroup
		wg.Go(func() { aOwn, aForeign = count(asub, "alice") })
		wg.Go(func() { bOwn, bForeign = count(bsub, "bob") })
		wg.Wait()
		t.Logf("alice's tab: %d own, %d foreign; bob's tab: %d own, %d foreign", aOwn, aForeign, bOwn, bForeign)
		assert.Equal(t, perUser, aOwn)
		assert.Zero(t, aForeign, "A received messages routed for someone else")
		assert.Equal(t, perUser, bOwn)
		assert.Zero(t, bForeign, "B received messages routed for someone else")
		require.NoError(t, atab.Close())
		require.NoError(t, btab.Close())
	})

	t.Run("bad requests: 400, 405, 415", func(t *testing.T) {
		r := e.request(t, http.MethodGet, "c-alice", "", "")
		assert.Equal(t, http.StatusMethodNotAllowed, r.status)
		assert.Equal(t, "POST", r.header.Get("Allow"))
		r = e.request(t, http.MethodPost, "c-alice", "text/plain", `{}`)
		assert.Equal(t, http.StatusUnsupportedMediaType, r.status, "a form post cannot set application/json")
		r = e.request(t, http.MethodPost, "c-alice", "application/x-www-form-urlencoded", `tab_id=x`)
		assert.Equal(t, http.StatusUnsupportedMediaType, r.status)
		for body, msg := range map[string]string{
			`{"tab_id":"../../tab-0000000000000000-x"}`:      "tab_id must be",
			`{"tab_id":"ABCDEFGHIJKL"}`:                      "tab_id must be",
			`{"tab_id":"short"}`:                             "tab_id must be",
			`{"tab_id":"` + strings.Repeat("a", 65) + `"}`:   "tab_id must be",
			`{"queue":"tab-other"}`:                          "unknown field",
			`{"bindings":[]}`:                                "bindings is an empty list",
			`{} {}`:                                          "exactly one JSON object",
			`not json`:                                       "JSON object",
			`{"tab_id":"` + strings.Repeat("a", 5000) + `"}`: "body over",
		} {
			r := e.request(t, http.MethodPost, "c-alice", "application/json; charset=utf-8", body)
			assert.Equal(t, http.StatusBadRequest, r.status, body)
			assert.Contains(t, r.errBody.Message, msg, body)
		}
	})

	t.Run("a lost queue is created again, empty, and the response says so", func(t *testing.T) {
		const tabBody = `{"tab_id": "alicetab0000000009"}`
		first := e.open(t, "c-alice", tabBody)
		assert.True(t, first.QueueCreated)
		e.publish(t, "customer.alice.before_loss", `{"n":1}`)
		require.Equal(t, 1, e.ready(t, first.Queue))
		// Stands for x-expires running out, an operator's delete or a
		// broker crash right after the declare (README, Guarantees).
		e.deleteQueue(t, first.Queue)

		again := e.open(t, "c-alice", tabBody)
		assert.Equal(t, first.Queue, again.Queue)
		assert.True(t, again.QueueCreated, "the page must learn that it missed messages")
		assert.Equal(t, 0, e.ready(t, again.Queue), "the message published before the loss is gone")
		e.publish(t, "customer.alice.after_loss", `{"n":2}`)
		assert.Equal(t, 1, e.ready(t, again.Queue), "bindings are back")
		assert.False(t, e.open(t, "c-alice", tabBody).QueueCreated)
	})

	t.Run("changed queue arguments keep the existing queue", func(t *testing.T) {
		changed := cfg
		changed.QueueMaxLength = 5 // the queue was declared with 10000; it exists, so it is kept, not redeclared
		changed.QueueExpires = 2 * time.Hour
		ss, err := tabsession.NewHandler(changed, nil)
		require.NoError(t, err)
		defer func() { require.NoError(t, ss.Close()) }()
		rec := serveDirect(ss, "c-alice", `{"tab_id":"alicetab0000000001"}`)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		assert.Equal(t, 10000.0, e.queueInfo(t, alice.Queue)["arguments"].(map[string]any)["x-max-length"], "kept as declared")
	})

	t.Run("missing exchange: 500, cause logged", func(t *testing.T) {
		app.setAllowed("carol", tabsession.Binding{Exchange: "no-such-exchange", Key: "x"})
		app.mu.Lock()
		app.sessions["c-carol"] = "carol"
		app.mu.Unlock()
		r := e.request(t, http.MethodPost, "c-carol", "application/json", `{}`)
		assert.Equal(t, http.StatusInternalServerError, r.status)
		assert.Equal(t, "internal", r.errBody.Error)
		assert.NotContains(t, r.raw, "no-such-exchange", "broker details stay in the server log")
		// The service's connection survives the channel error.
		e.open(t, "c-alice", `{"tab_id":"alicetab0000000001"}`)
	})

	t.Run("service connection closed by the broker: next request redials", func(t *testing.T) {
		out, err := node.Ctl("list_connections", "-q", "--no-table-headers", "pid", "client_properties")
		require.NoError(t, err)
		var pid string
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "durablews-tabsession") {
				pid, _, _ = strings.Cut(line, "\t")
			}
		}
		require.NotEmpty(t, pid, out)
		_, err = node.Ctl("close_connection", pid, "test: operator closed it")
		require.NoError(t, err)
		s := e.open(t, "c-alice", `{"tab_id":"alicetab0000000001"}`)
		assert.Equal(t, alice.Queue, s.Queue)
	})

	t.Run("broker unreachable: 503", func(t *testing.T) {
		down := cfg
		down.AMQPURL = "amqp://guest:guest@" + closedPort(t) + "/"
		ss, err := tabsession.NewHandler(down, nil)
		require.NoError(t, err)
		defer func() { require.NoError(t, ss.Close()) }()
		rec := serveDirect(ss, "c-alice", `{}`)
		assert.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
		assert.Equal(t, "2", rec.Header().Get("Retry-After"))
		assert.Contains(t, rec.Body.String(), `"error":"unavailable"`)
	})

	t.Run("Prepare: events published between render and connect wait in the queue, once", func(t *testing.T) {
		app.setAllowed("dave", tabsession.Binding{Exchange: "events", Key: "customer.dave.#"})
		app.mu.Lock()
		app.sessions["c-dave"] = "dave"
		app.mu.Unlock()
		page := httptest.NewRequest(http.MethodGet, "/orders", nil)
		page.AddCookie(&http.Cookie{Name: sessionCookie, Value: "c-dave"})

		s, err := sessions.Prepare(page)
		require.NoError(t, err)
		t.Cleanup(func() { e.deleteQueue(t, s.Queue) })
		assert.Equal(t, tabsession.Version, s.V)
		assert.Regexp(t, `^[a-z2-7]{26}$`, s.TabID, "a new tab id, like the endpoint makes")
		assert.True(t, s.QueueCreated)
		assert.True(t, e.queueExists(t, s.Queue), "the queue exists as soon as Prepare returns")
		assert.Equal(t, []string{"events customer.dave.#"}, e.bindingsOf(t, s.Queue))
		claims, _ := parseClaims(t, s.Token, key)
		assert.Equal(t, "rabbitmq.read:%2F/"+s.Queue, claims["scope"])

		// What the page embeds is the endpoint's JSON: the same fields.
		embedded, err := json.Marshal(s)
		require.NoError(t, err)
		var got, want map[string]any
		require.NoError(t, json.Unmarshal(embedded, &got))
		require.NoError(t, json.Unmarshal([]byte(e.request(t, http.MethodPost, "c-dave", "application/json", `{}`).raw), &want))
		assert.Equal(t, sortedKeys(want), sortedKeys(got))
		assert.EqualValues(t, 1, got["v"])

		// The page is on its way to the browser; events happen.
		for i := range 3 {
			e.publish(t, "customer.dave.order_"+fmt.Sprint(i), fmt.Sprintf(`{"n":%d}`, i))
		}
		assert.Equal(t, 3, e.ready(t, s.Queue), "published after Prepare, before any tab connected")

		// The tab starts from the embedded session.
		var fromPage tabsession.Session
		require.NoError(t, json.Unmarshal(embedded, &fromPage))
		tab := dialTab(t, fromPage)
		sub, err := tab.SubscribeQueue(brokertest.Ctx(t, 10*time.Second), fromPage.Destination[len("/amq/queue/"):], 10)
		require.NoError(t, err)
		for i := range 3 {
			m := nextBody(t, sub, 10*time.Second)
			assert.JSONEq(t, fmt.Sprintf(`{"n":%d}`, i), string(m.Body))
			assert.False(t, m.Redelivered)
		}
		_, err = sub.Next(brokertest.Ctx(t, time.Second))
		assert.ErrorIs(t, err, context.DeadlineExceeded, "each event once")
		require.NoError(t, tab.Close())

		// The client renews through the endpoint with the prepared tab id.
		renewed := e.open(t, "c-dave", `{"tab_id":"`+s.TabID+`"}`)
		assert.Equal(t, s.Queue, renewed.Queue)
		assert.False(t, renewed.QueueCreated)
	})

	t.Run("Prepare refuses like the endpoint", func(t *testing.T) {
		page := func(cookie string) *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/orders", nil)
			if cookie != "" {
				r.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
			}
			return r
		}
		_, err := sessions.Prepare(page(""))
		assert.ErrorIs(t, err, tabsession.ErrUnauthenticated)
		_, err = sessions.Prepare(page("c-mallory"))
		assert.ErrorIs(t, err, tabsession.ErrForbidden)

		down := cfg
		down.AMQPURL = "amqp://guest:guest@" + closedPort(t) + "/"
		ss, err := tabsession.NewHandler(down, nil)
		require.NoError(t, err)
		_, err = ss.Prepare(page("c-alice"))
		assert.ErrorIs(t, err, tabsession.ErrUnavailable)
		require.NoError(t, ss.Close())
		_, err = ss.Prepare(page("c-alice"))
		assert.ErrorIs(t, err, tabsession.ErrUnavailable)
		assert.ErrorIs(t, err, tabsession.ErrClosed)
	})

	t.Run("receipt grants", func(t *testing.T) { testReceiptGrants(t, e, cfg) })

	t.Run("leader tokens (shared mode)", func(t *testing.T) { testLeaderTokens(t, e, cfg) })

	// Last: it changes the script's files under the running node.
	t.Run("stream grants", func(t *testing.T) { testStreamGrants(t, e, cfg) })

	t.Run("script: idempotent, and detects a config the node has not loaded", func(t *testing.T) {
		ctx := brokertest.Ctx(t, 2*time.Minute)
		env := oauthbroker.NodeEnv(node, files)
		// oauthbroker.Start already applied once.
		r := oauthbroker.Run(ctx, env, "apply")
		require.NoError(t, r.Err, r)
		assert.Equal(t, "rabbitmq-tab-sessions: nothing to change\n", r.Stdout, "a second apply changes nothing")

		// A new key on disk that the running node does not have.
		require.NoError(t, os.Remove(files.KeyFile))
		r = oauthbroker.Run(ctx, env, "apply")
		require.NoError(t, r.Err, r)
		t.Logf("apply after deleting the key: %s", r.Stdout)
		assert.Contains(t, r.Stdout, "restart required: differs: running node has")
		r = oauthbroker.Run(ctx, env, "check")
		assert.Error(t, r.Err, "check fails until the node is restarted")
		assert.Contains(t, r.Stderr, "not configured: running node: differs")
	})

	t.Logf("TestTabSessions total %v", time.Since(start).Round(time.Millisecond))
}

func TestConfigValidate(t *testing.T) {
	_, err := tabsession.NewHandler(tabsession.Config{
		AMQPURL: "http://x", WebSTOMPURL: "http://x", SigningKey: []byte("short"), KeyID: "a b",
		TokenTTL: time.Millisecond, QueueMaxLength: -1, ResourceServerID: "a/b", QueueCreateInterval: -time.Second,
		ReceiptsExchange: "receipts",
	}, nil)
	require.Error(t, err)
	for _, want := range []string{"ReceiptsExchange \"receipts\" is set but Receipts is false", "AMQPURL", "WebSTOMPURL", "Authenticate is nil", "Bindings is nil", "SigningKey is 5 bytes",
		"KeyID", "ResourceServerID", "TokenTTL", "QueueMaxLength", "QueueCreateInterval -1s is negative"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestConfigValidate_ReceiptsExchange(t *testing.T) {
	for _, name := range []string{"a/b", "r*", "has space", "%2F", strings.Repeat("x", 128)} {
		_, err := tabsession.NewHandler(tabsession.Config{Receipts: true, ReceiptsExchange: name}, nil)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "ReceiptsExchange "+fmt.Sprintf("%q", name)+": want 1 to 127 characters")
	}
	_, err := tabsession.NewHandler(tabsession.Config{Receipts: true}, nil)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "ReceiptsExchange", "Receipts alone takes the default exchange")
}

func TestLoadSigningKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	got, err := tabsession.LoadSigningKey(write("ok", base64.RawURLEncoding.EncodeToString(key)+"\n"))
	require.NoError(t, err)
	assert.Equal(t, key, got)
	_, err = tabsession.LoadSigningKey(write("short", base64.RawURLEncoding.EncodeToString(key[:16])))
	assert.ErrorContains(t, err, "need at least 32")
	_, err = tabsession.LoadSigningKey(write("bad", "not/base64url+"))
	assert.ErrorContains(t, err, "not base64url")
	_, err = tabsession.LoadSigningKey(filepath.Join(dir, "missing"))
	assert.Error(t, err)
}
