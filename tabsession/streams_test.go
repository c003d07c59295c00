package tabsession_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews"
	"github.com/durablews/durablews/broadcast"
	"github.com/durablews/durablews/internal/brokertest"
	"github.com/durablews/durablews/internal/stomptab"
	"github.com/durablews/durablews/tabsession"
)

// testStreamGrants runs on TestTabSessions' OAuth node: a session grants
// read on exactly the streams Config.Streams allows, in the same token.
func testStreamGrants(t *testing.T, e *tabEnv, cfg tabsession.Config) {
	ctx := brokertest.Ctx(t, 30*time.Second)
	for _, s := range []broadcast.Config{
		{Stream: "announcements", Exchange: "events", BindingKeys: []string{"broadcast.announcements"}, MaxAge: time.Hour},
		{Stream: "board-feed", Exchange: "events", BindingKeys: []string{"broadcast.board"}, MaxAge: time.Hour},
	} {
		require.NoError(t, broadcast.Declare(ctx, e.admin, s))
	}
	publish := func(key, body string) string {
		t.Helper()
		m := message.NewMessage(watermill.NewUUID(), []byte(body))
		m.Metadata.Set(durablews.RoutingKeyMetadataKey, key)
		require.NoError(t, e.pub.Publish("events", m))
		return m.UUID
	}
	publish("broadcast.announcements", `{"n":1}`)
	publish("broadcast.announcements", `{"n":2}`)
	publish("broadcast.board", `{"board":"secret"}`)

	cfg.Streams = func(_ context.Context, user string) ([]string, error) {
		switch user {
		case "alice":
			return []string{"announcements", "announcements"}, nil // duplicates dropped
		case "mallory2":
			return nil, errors.New("directory down")
		}
		return nil, nil
	}
	sessions, err := tabsession.NewHandler(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sessions.Close()) })
	page := func(cookie string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: cookie})
		return r
	}

	// Render time: the stream's end is in the session, and what is
	// published after Prepare is read from the token, with no gap.
	s, err := sessions.Prepare(page("c-alice"))
	require.NoError(t, err)
	t.Cleanup(func() { e.deleteQueue(t, s.Queue) })
	require.Len(t, s.Streams, 1)
	st := s.Streams[0]
	assert.Equal(t, "announcements", st.Name)
	assert.Equal(t, "/amq/queue/announcements", st.Destination)
	require.NotNil(t, st.Start, "Prepare gives the stream's end")
	assert.Equal(t, broadcast.KindLast, st.Start.Kind, "the stream holds two messages: its end is an offset")
	claims, _ := parseClaims(t, s.Token, e.key)
	assert.Equal(t, "rabbitmq.read:%2F/"+s.Queue+" rabbitmq.read:%2F/announcements", claims["scope"],
		"read on the tab's queue and on the granted stream, nothing more")
	embedded, err := json.Marshal(s)
	require.NoError(t, err)
	var asJSON struct {
		Streams []map[string]any `json:"streams"`
	}
	require.NoError(t, json.Unmarshal(embedded, &asJSON))
	assert.Equal(t, []map[string]any{{"name": "announcements", "destination": "/amq/queue/announcements",
		"start": map[string]any{"last": float64(st.Start.Offset)}}}, asJSON.Streams, "the JSON the web client reads")

	after := publish("broadcast.announcements", `{"n":3}`)
	tab := dialTab(t, *s)
	reader := stomptab.NewStreamReader("announcements", *st.Start, 10)
	sub, err := reader.Subscribe(brokertest.Ctx(t, 10*time.Second), tab)
	require.NoError(t, err, "the token reads the granted stream over Web-STOMP")
	require.NoError(t, sub.ReceiveID(brokertest.Ctx(t, 10*time.Second), after))
	assert.Empty(t, reader.Gaps())
	handled := reader.Handled()
	assert.Equal(t, after, handled[len(handled)-1].ID)
	assert.LessOrEqual(t, len(handled), 2, "from the stream's last chunk on, not from its start")
	require.NoError(t, tab.Close())

	t.Run("the endpoint lists the streams without a start", func(t *testing.T) {
		rec := serveDirect(sessions, "c-alice", `{"tab_id":"`+s.TabID+`"}`)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var raw struct {
			Streams []map[string]any `json:"streams"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &raw))
		assert.Equal(t, []map[string]any{{"name": "announcements", "destination": "/amq/queue/announcements"}}, raw.Streams,
			"a renewal gives no start: the tab resumes at its own offset")
		rec = serveDirect(sessions, "c-bob", `{}`)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		assert.NotContains(t, rec.Body.String(), `"streams"`, "no stream granted: no streams field")
	})

	t.Run("refused: a stream not granted", func(t *testing.T) {
		w := e.watchLog(t)
		tab := dialTab(t, *s)
		_, err := stomptab.NewStreamReader("board-feed", broadcast.Position{}, 10).Subscribe(brokertest.Ctx(t, 10*time.Second), tab)
		require.Error(t, err, "SUBSCRIBE to a stream the session did not grant must fail")
		t.Logf("client observed: %v", err)
		t.Logf("broker: %s", w.wait(t, "basic.consume", "access_refused", "access to queue 'board-feed'", "refused for user '"+s.Queue+"'"))
		ch := amqpWithToken(t, e.node, s.Token)
		_, err = ch.Consume("board-feed", "", false, false, false, false, nil)
		requireAccessRefused(t, err, "access to queue 'board-feed'")

		bob := e.open(t, "c-bob", `{}`)
		_, err = stomptab.NewStreamReader("announcements", broadcast.Position{}, 10).Subscribe(brokertest.Ctx(t, 10*time.Second), dialTab(t, bob))
		require.Error(t, err, "a user the callback grants no stream reads none")
	})

	t.Run("refused: a client cannot widen the grant", func(t *testing.T) {
		rec := serveDirect(sessions, "c-alice", `{"streams":[{"name":"board-feed","destination":"/amq/queue/board-feed"}]}`)
		assert.Equal(t, http.StatusBadRequest, rec.Code, "streams are not the client's to ask for: %s", rec.Body.String())
		rec = serveDirect(sessions, "c-alice", `{"bindings":[{"exchange":"events","key":"broadcast.board"}]}`)
		assert.Equal(t, http.StatusForbidden, rec.Code, "nor a binding to the stream's key into its own queue: %s", rec.Body.String())
		// SUBSCRIBE to /queue/<stream> would declare: refused with the
		// other declares (TestTabSessions "refused: declaring a queue").
	})

	t.Run("bad callback answers are the application's error: 500", func(t *testing.T) {
		for name, streams := range map[string][]string{
			"tab queue namespace": {"tab-0123456789abcdef-victimtab00000001"},
			"wildcard":            {"*"},
			"slash":               {"a/b"},
		} {
			bad := cfg
			bad.Streams = func(context.Context, string) ([]string, error) { return streams, nil }
			h, err := tabsession.NewHandler(bad, nil)
			require.NoError(t, err)
			rec := serveDirect(h, "c-alice", `{}`)
			assert.Equal(t, http.StatusInternalServerError, rec.Code, "%s: %s", name, rec.Body.String())
			require.NoError(t, h.Close())
		}
		e.app.mu.Lock()
		e.app.sessions["c-mallory2"] = "mallory2"
		e.app.mu.Unlock()
		e.app.setAllowed("mallory2", tabsession.Binding{Exchange: "events", Key: "customer.mallory2.#"})
		rec := serveDirect(sessions, "c-mallory2", `{}`)
		assert.Equal(t, http.StatusInternalServerError, rec.Code, rec.Body.String())

		missing := cfg
		missing.Streams = func(context.Context, string) ([]string, error) { return []string{"never-declared"}, nil }
		h, err := tabsession.NewHandler(missing, nil)
		require.NoError(t, err)
		defer func() { require.NoError(t, h.Close()) }()
		_, err = h.Prepare(page("c-alice"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), `stream "never-declared" does not exist`)
	})
}
