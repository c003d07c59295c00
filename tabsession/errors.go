package tabsession

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Errors an Authenticate or Bindings callback returns (wrapped or not) to
// choose the HTTP status of a refused session request. Handler.Prepare
// returns errors that match them with errors.Is, and ErrUnavailable.
var (
	// ErrUnauthenticated: no valid application session; 401.
	ErrUnauthenticated = errors.New("tabsession: not authenticated")
	// ErrForbidden: authenticated but not allowed to open a tab session;
	// 403.
	ErrForbidden = errors.New("tabsession: not allowed")
	// ErrUnavailable: the broker (or the management API) cannot be
	// reached, or the Handler is closed; 503.
	ErrUnavailable = errors.New("tabsession: broker unavailable")
	// ErrClosed is the cause after Handler.Close (HTTP 503, and it matches
	// ErrUnavailable).
	ErrClosed = errors.New("tabsession: handler closed")
	// ErrQueueLimitReached is the cause when the broker refuses a new tab
	// queue because the vhost's max-queues (or the cluster's queue limit)
	// is reached: HTTP 503 "queue limit reached", and it matches
	// ErrUnavailable. Existing tabs keep being served.
	ErrQueueLimitReached = errors.New("tabsession: broker queue limit reached")
	// ErrRateLimited: the user created tab queues faster than
	// Config.QueueCreateBurst/QueueCreateInterval allow; HTTP 429 with
	// Retry-After.
	ErrRateLimited = errors.New("tabsession: too many new tab queues for this user")
)

// errInternal is the kind of every 500.
var errInternal = errors.New("tabsession: internal error")

// httpError is a refusal with its status and client-facing message. It
// matches its kind (ErrForbidden, ...) and its cause with errors.Is.
type httpError struct {
	status  int
	code    string
	message string
	kind    error
	cause   error // logged, never sent
	// retryAfter, when set, is the Retry-After of the answer (rounded up
	// to seconds); a 503 without it says 2 s.
	retryAfter time.Duration
}

func (e *httpError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.status, e.code, e.message, e.cause)
	}
	return fmt.Sprintf("%d %s: %s", e.status, e.code, e.message)
}

func (e *httpError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func badRequest(format string, args ...any) *httpError {
	return &httpError{status: http.StatusBadRequest, code: "bad_request", message: fmt.Sprintf(format, args...), kind: errBadRequest}
}

// errBadRequest is the kind of every 400.
var errBadRequest = errors.New("tabsession: bad request")

func unauthenticated(cause error) *httpError {
	return &httpError{status: http.StatusUnauthorized, code: "unauthenticated", message: "not logged in: log in and retry",
		kind: ErrUnauthenticated, cause: cause}
}

func forbidden(cause error, format string, args ...any) *httpError {
	return &httpError{status: http.StatusForbidden, code: "forbidden", message: fmt.Sprintf(format, args...), kind: ErrForbidden, cause: cause}
}

func internalError(cause error) *httpError {
	return &httpError{status: http.StatusInternalServerError, code: "internal", message: "internal error; the server logged the cause",
		kind: errInternal, cause: cause}
}

func unavailable(cause error) *httpError {
	return &httpError{status: http.StatusServiceUnavailable, code: "unavailable", message: "the message broker is unavailable; retry later",
		kind: ErrUnavailable, cause: cause}
}

// queueLimitReached is the 503 for a tab queue the broker refused to create
// at its queue limit (vhost max-queues).
func queueLimitReached(queue string, cause error) *httpError {
	return &httpError{status: http.StatusServiceUnavailable, code: "queue_limit_reached",
		message: "queue limit reached: the broker accepts no new queues now; retry later (existing tabs are not affected)",
		kind:    ErrUnavailable,
		cause: fmt.Errorf("%w: creating tab queue %s: %w (raise the vhost's max-queues with rabbitmqctl set_vhost_limits, "+
			"or lower MaxQueuesPerUser or QueueExpires)", ErrQueueLimitReached, queue, cause),
		retryAfter: 10 * time.Second}
}

// rateLimited is the 429 for a user over the queue-creation rate.
func rateLimited(retryAfter time.Duration) *httpError {
	secs := int((retryAfter + time.Second - 1) / time.Second)
	return &httpError{status: http.StatusTooManyRequests, code: "too_many_requests",
		message: fmt.Sprintf("too many new tabs for this user: retry in %d s, or reuse an open tab", secs),
		kind:    ErrRateLimited, retryAfter: retryAfter}
}
