package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	rabbithole "github.com/michaelklishin/rabbit-hole/v3"
)

// newManagement returns a rabbit-hole client for o's management API.
func newManagement(o *options) (*rabbithole.Client, error) {
	c, err := rabbithole.NewClient(o.mgmt, o.mgmtUser, o.mgmtPassword)
	if err != nil {
		return nil, fmt.Errorf("management URL %q: %w", o.mgmt, err)
	}
	c.SetTimeout(o.timeout)
	return c, nil
}

// isNotFound reports whether err is the management API's 404.
func isNotFound(err error) bool {
	var er rabbithole.ErrorResponse
	if errors.As(err, &er) {
		return er.StatusCode == http.StatusNotFound
	}
	var erp *rabbithole.ErrorResponse
	return errors.As(err, &erp) && erp.StatusCode == http.StatusNotFound
}

// tabQueue is one queue of GET /api/queues/{vhost}. rabbit-hole v3.5.0's
// QueueInfo has no idle_since, and doctor needs it for the oldest idle tab
// queue, so this one listing is read directly, with the client's endpoint,
// credentials and timeout.
type tabQueue struct {
	Name       string         `json:"name"`
	Consumers  int            `json:"consumers"`
	IdleSince  string         `json:"idle_since"`
	Policy     *string        `json:"policy"`
	Arguments  map[string]any `json:"arguments"`
	Durable    bool           `json:"durable"`
	AutoDelete bool           `json:"auto_delete"`
	Messages   int            `json:"messages"`
	Memory     int64          `json:"memory"`
}

// idleSince parses idle_since: "2026-11-25T20:51:38.944+00:00" on 3.10,
// "2022-01-02 15:04:05" on older versions (UTC). Zero if absent.
func (q tabQueue) idleSince() time.Time {
	if q.IdleSince == "" {
		return time.Time{}
	}
	if t, err := time.Parse(time.RFC3339, q.IdleSince); err == nil {
		return t
	}
	if t, err := time.Parse("2006-01-02 15:04:05", q.IdleSince); err == nil {
		return t
	}
	return time.Time{}
}

func (q tabQueue) policy() string {
	if q.Policy == nil {
		return ""
	}
	return *q.Policy
}

// listTabQueues returns the queues of vhost whose name matches pattern
// (the broker filters with its own regex engine, the one policies use),
// 500 per page.
func listTabQueues(ctx context.Context, c *rabbithole.Client, timeout time.Duration, vhost, pattern string) ([]tabQueue, error) {
	var out []tabQueue
	httpc := &http.Client{Timeout: timeout}
	for page := 1; ; page++ {
		q := url.Values{}
		q.Set("page", strconv.Itoa(page))
		q.Set("page_size", "500")
		q.Set("name", pattern)
		q.Set("use_regex", "true")
		q.Set("columns", "name,consumers,idle_since,policy,arguments,durable,auto_delete,messages,memory")
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Endpoint+"/api/queues/"+url.PathEscape(vhost)+"?"+q.Encode(), nil)
		if err != nil {
			return nil, err
		}
		req.SetBasicAuth(c.Username, c.Password)
		resp, err := httpc.Do(req)
		if err != nil {
			return nil, err
		}
		var body struct {
			Items     []tabQueue `json:"items"`
			PageCount int        `json:"page_count"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET /api/queues: %s", resp.Status)
		}
		if err != nil {
			return nil, fmt.Errorf("GET /api/queues: %w", err)
		}
		out = append(out, body.Items...)
		if page >= body.PageCount {
			return out, nil
		}
	}
}
