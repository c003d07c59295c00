package stomptab

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/durablews/durablews/internal/brokerversion"
)

// ManagementURL is the shared test broker's management API with guest's
// credentials (brokerversion.SharedManagementURL).
func ManagementURL() string {
	u, err := url.Parse(brokerversion.SharedManagementURL())
	if err != nil {
		return brokerversion.SharedManagementURL()
	}
	if u.User == nil {
		u.User = url.UserPassword("guest", "guest")
	}
	return u.String()
}

// InspectQueue looks a queue up with a passive queue.declare on a
// throwaway channel (a failed passive declare closes the channel, so it
// never reuses one). exists is false when the broker answered 404
// NOT_FOUND. q carries the ready-message and consumer counts.
//
// Caution: a passive declare counts as use of the queue and restarts
// its x-expires timer, so polling with it keeps an idle queue alive; use
// QueueExistsHTTP to watch a queue expire.
func InspectQueue(conn *amqp.Connection, name string) (q amqp.Queue, exists bool, err error) {
	ch, err := conn.Channel()
	if err != nil {
		return amqp.Queue{}, false, fmt.Errorf("stomptab: open channel: %w", err)
	}
	defer ch.Close() // error ignored: the channel is already closed after a 404
	q, err = ch.QueueDeclarePassive(name, false, false, false, false, nil)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		return amqp.Queue{}, false, nil
	}
	if err != nil {
		return amqp.Queue{}, false, fmt.Errorf("stomptab: passive declare %q: %w", name, err)
	}
	return q, true, nil
}

// QueueExists reports whether the queue exists (see InspectQueue for the
// caveat about x-expires).
func QueueExists(conn *amqp.Connection, name string) (bool, error) {
	_, ok, err := InspectQueue(conn, name)
	return ok, err
}

// QueueExistsHTTP asks the management API (GET /api/queues/<vhost>/<name>)
// whether a queue exists. Unlike a passive declare it does not touch the
// queue, so it does not renew x-expires. mgmtURL carries the credentials,
// e.g. ManagementURL(); vhost "" means "/".
func QueueExistsHTTP(ctx context.Context, mgmtURL, vhost, name string) (bool, error) {
	if vhost == "" {
		vhost = "/"
	}
	u, err := url.Parse(mgmtURL)
	if err != nil {
		return false, err
	}
	user := u.User
	u.User = nil
	target := strings.TrimRight(u.String(), "/") + "/api/queues/" + url.PathEscape(vhost) + "/" + url.PathEscape(name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return false, err
	}
	if user != nil {
		pw, _ := user.Password()
		req.SetBasicAuth(user.Username(), pw)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return false, fmt.Errorf("stomptab: management API: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	default:
		return false, fmt.Errorf("stomptab: management API %s: %s", target, resp.Status)
	}
}

// No keep-alives: no idle connection goroutines for goleak to find.
var httpClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}
