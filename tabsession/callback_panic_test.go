package tabsession_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/durablews/durablews/tabsession"
)

// TestCallbackPanicIsRecovered: a panic in Authenticate, Bindings or
// Streams answers 500 with the cause logged, Prepare returns an error
// instead of panicking, and Close still returns. Each panic happens before
// the handler dials the broker, so no broker is needed (AMQPURL is a port
// nobody listens on).
func TestCallbackPanicIsRecovered(t *testing.T) {
	key := make([]byte, tabsession.MinSigningKeyBytes)
	_, _ = rand.Read(key)
	ok := func(*http.Request) (string, error) { return "alice", nil }
	allowed := func(context.Context, string) ([]tabsession.Binding, error) {
		return []tabsession.Binding{{Exchange: "events", Key: "customer.alice.#"}}, nil
	}
	for _, tc := range []struct {
		callback string
		set      func(*tabsession.Config)
	}{
		{"Authenticate", func(c *tabsession.Config) {
			c.Authenticate = func(*http.Request) (string, error) { panic("authenticate exploded") }
		}},
		{"Bindings", func(c *tabsession.Config) {
			c.Bindings = func(context.Context, string) ([]tabsession.Binding, error) {
				var m map[string][]tabsession.Binding
				m["alice"] = nil // a real bug: assignment to a nil map
				return nil, nil
			}
		}},
		{"Streams", func(c *tabsession.Config) {
			c.Streams = func(context.Context, string) ([]string, error) { panic(fmt.Errorf("streams exploded")) }
		}},
	} {
		t.Run(tc.callback, func(t *testing.T) {
			logs := watermill.NewCaptureLogger()
			cfg := tabsession.Config{
				AMQPURL:      "amqp://guest:guest@" + closedPort(t) + "/",
				WebSTOMPURL:  "ws://127.0.0.1:15674/ws",
				SigningKey:   key,
				Authenticate: ok,
				Bindings:     allowed,
			}
			tc.set(&cfg)
			h, err := tabsession.NewHandler(cfg, logs)
			require.NoError(t, err)
			// A real server: net/http recovers a panic that escapes the
			// handler (and drops the connection), so without the fix the
			// test fails here instead of crashing the test binary.
			srv := httptest.NewServer(h)
			defer srv.Close()

			for i := range 3 { // the counter of requests in progress must come down each time
				req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{}`))
				require.NoError(t, err)
				req.Header.Set("Content-Type", "application/json")
				resp, err := srv.Client().Do(req)
				if !assert.NoError(t, err, "request %d: the panic escaped the handler", i) {
					continue // on to Close, which must return all the same
				}
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				assert.Equal(t, http.StatusInternalServerError, resp.StatusCode, "request %d: %s", i, body)
				var eb struct{ Error, Message string }
				assert.NoError(t, json.Unmarshal(body, &eb), "%s", body)
				assert.Equal(t, "internal", eb.Error)
				assert.NotContains(t, string(body), "exploded", "the panic value stays in the server log")
			}
			logged := false
			for _, m := range logs.Captured()[watermill.ErrorLogLevel] {
				cause, _ := m.Fields["cause"].(string)
				if strings.Contains(cause, "panic in the "+tc.callback+" callback") && strings.Contains(cause, "goroutine") {
					logged = true
					t.Logf("logged cause: %.200s…", cause)
				}
			}
			assert.True(t, logged, "the cause (callback, panic value, stack) is logged: %+v", logs.Captured())

			page := httptest.NewRequest(http.MethodGet, "/", nil)
			_, err = func() (_ *tabsession.Session, err error) {
				defer func() {
					if p := recover(); p != nil {
						err = fmt.Errorf("Prepare panicked: %v", p)
					}
				}()
				return h.Prepare(page)
			}()
			if assert.Error(t, err) {
				assert.Contains(t, err.Error(), "panic in the "+tc.callback+" callback")
				assert.NotContains(t, err.Error(), "Prepare panicked")
			}

			closed := make(chan error, 1)
			go func() { closed <- h.Close() }()
			select {
			case err := <-closed:
				assert.NoError(t, err)
			case <-time.After(10 * time.Second):
				t.Fatal("Handler.Close did not return within 10 s after a callback panicked: a request is still counted in progress")
			}
		})
	}
}
