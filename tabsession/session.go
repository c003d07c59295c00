package tabsession

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ThreeDotsLabs/watermill"
)

// Version is the version of the session JSON (the "v" field). It changes
// only when a field changes meaning or goes away; new fields keep it.
const Version = 1

// Session is a tab session: the JSON body of a successful session
// response, and what Prepare returns. The package documentation describes
// each field.
type Session struct {
	V           int       `json:"v"`
	TabID       string    `json:"tab_id"`
	URL         string    `json:"url"`
	URLs        []string  `json:"urls"`
	Vhost       string    `json:"vhost"`
	Queue       string    `json:"queue"`
	Destination string    `json:"destination"`
	Token       string    `json:"token"`
	ExpiresAt   time.Time `json:"expires_at"`
	ExpiresIn   int       `json:"expires_in"`
	RenewIn     int       `json:"renew_in"`
	Bindings    []Binding `json:"bindings"`
	// Streams are the broadcast streams the token may read (Config.Streams);
	// omitted when none.
	Streams []Stream `json:"streams,omitempty"`
	// QueueCreated is true when this request had to create the tab's
	// queue. On a tab's first session that is normal; on a later one the
	// queue was gone: it expired (the tab was away longer than
	// QueueExpires), an operator deleted it, or the broker lost it in a
	// crash right after declaring it. Messages published while it was
	// missing are lost, so the page should reload its state.
	QueueCreated bool `json:"queue_created"`
	// Receipts is where the tab sends delivery receipts (Config.Receipts);
	// omitted when receipts are off.
	Receipts *ReceiptsGrant `json:"receipts,omitempty"`
	// Tabs are the queues of the user's other tabs this token reads too
	// (the request's "tabs": a shared-mode leader reading every tab's queue
	// on one connection); omitted when none were asked for. Each queue name
	// derives from the authenticated user and the tab id, so a request can
	// only ever name its own user's queues.
	Tabs []TabGrant `json:"tabs,omitempty"`
	// MissingTabs are the requested tab ids whose queue does not exist
	// (expired, deleted, or never created: each tab's queue is created by
	// that tab's own session request): the token does not read them.
	MissingTabs []string `json:"missing_tabs,omitempty"`
}

// TabGrant is another tab of the same user whose queue a session's token
// reads (Session.Tabs).
type TabGrant struct {
	TabID       string `json:"tab_id"`
	Queue       string `json:"queue"`
	Destination string `json:"destination"`
	// ReceiptsDestination is where that tab's delivery receipts go
	// (Config.Receipts; the token may write there too); empty when receipts are off.
	ReceiptsDestination string `json:"receipts_destination,omitempty"`
}

// Prepare opens a tab session for the page the server is rendering in
// response to r: it authenticates r, creates the tab's queue with a new
// tab id, binds it to every binding the user is allowed and mints the
// token, exactly as a POST to the endpoint would. Embed the result in the
// page and start the browser client from it: every event published after
// Prepare returned waits in the queue, so none is lost between rendering
// the page and connecting, and none is shown twice. Load the state the page
// shows after Prepare, not before.
//
// The Session marshals to the JSON the endpoint returns; html/template
// escapes it for a <script> element (see the example). The client renews
// it through the endpoint as usual, with the same tab_id.
//
// Errors match ErrUnauthenticated, ErrForbidden, ErrRateLimited (the
// user created too many tab queues lately; Prepare always creates one) or
// ErrUnavailable (and ErrQueueLimitReached at the broker's queue limit)
// with errors.Is; any other error is the application's or the broker's
// configuration, or a panic in a callback (what the endpoint answers with
// 500).
func (h *Handler) Prepare(r *http.Request) (*Session, error) {
	user, done, herr := h.begin(r)
	if herr != nil {
		return nil, herr
	}
	defer done()
	s, herr := h.open(r, user, newTabID(), nil, nil)
	if herr != nil {
		return nil, herr
	}
	if herr := h.positionStreams(r.Context(), s.Streams); herr != nil {
		return nil, herr
	}
	return s, nil
}

// open grants user a session for tabID with the requested bindings (nil:
// all allowed): it provisions the queue and mints the token, which also
// reads the existing queues of the user's tabs (a leader's request).
func (h *Handler) open(r *http.Request, user, tabID string, requested *[]Binding, tabs []string) (*Session, *httpError) {
	allowed, err := callGuarded("Bindings", func() ([]Binding, error) { return h.cfg.Bindings(r.Context(), user) })
	var cp *callbackPanic
	switch {
	case errors.As(err, &cp):
		return nil, internalError(cp)
	case errors.Is(err, ErrForbidden):
		return nil, forbidden(err, "this user may not receive any messages")
	case err != nil:
		return nil, internalError(fmt.Errorf("Bindings callback: %w", err))
	case len(allowed) == 0:
		return nil, forbidden(nil, "this user may not receive any messages")
	}
	allowed, err = cleanBindings(allowed)
	if err != nil {
		return nil, internalError(fmt.Errorf("Bindings callback returned %w", err))
	}
	granted, herr := selectBindings(allowed, requested)
	if herr != nil {
		return nil, herr
	}
	streams, herr := h.grantStreams(r.Context(), user)
	if herr != nil {
		return nil, herr
	}

	ukey := userKey(h.nameKey, user)
	queue := queueName(h.nameKey, user, tabID)
	created, err := h.ensureQueueWithin(user, queue, granted)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			return nil, he
		}
		return nil, internalError(err)
	}

	joined, missing, herr := h.tabQueuesWithin(user, tabs)
	if herr != nil {
		return nil, herr
	}

	now := time.Now()
	receipts := h.receiptsGrant(ukey, tabID)
	var writes []string
	if receipts != nil {
		writes = append(writes, writeScope(h.cfg.ResourceServerID, h.vhost, h.cfg.ReceiptsExchange, receiptsRoutingKey(ukey, tabID)))
	}
	reads := streamNames(streams)
	for i, j := range joined {
		reads = append(reads, j.Queue)
		if rg := h.receiptsGrant(ukey, j.TabID); rg != nil {
			joined[i].ReceiptsDestination = rg.Destination
			writes = append(writes, writeScope(h.cfg.ResourceServerID, h.vhost, h.cfg.ReceiptsExchange, receiptsRoutingKey(ukey, j.TabID)))
		}
	}
	token, exp, err := mintTabToken(h.cfg.SigningKey, h.cfg.KeyID, h.cfg.ResourceServerID, h.vhost, queue, reads, writes, now, h.cfg.TokenTTL)
	if err != nil {
		return nil, internalError(err)
	}
	expiresIn := int(exp.Sub(now) / time.Second)
	h.logger.Debug("Tab session granted", watermill.LogFields{"queue": queue, "bindings": len(granted), "expires_at": exp})
	return &Session{
		V:            Version,
		TabID:        tabID,
		URL:          h.cfg.webSTOMPURLs()[0],
		URLs:         h.cfg.webSTOMPURLs(),
		Vhost:        h.vhost,
		Queue:        queue,
		Destination:  "/amq/queue/" + queue,
		Token:        token,
		ExpiresAt:    exp.UTC(),
		ExpiresIn:    expiresIn,
		RenewIn:      max(expiresIn*3/4, 1),
		Bindings:     granted,
		Streams:      streams,
		QueueCreated: created,
		Receipts:     receipts,
		Tabs:         joined,
		MissingTabs:  missing,
	}, nil
}
