package receipts

import "errors"

// Errors of this package. Functions wrap them with detail; test with
// errors.Is.
var (
	// ErrMalformed: a receipt batch (its routing key or its body) does not
	// follow the wire format; the error text says which part and why. The
	// Subscriber refuses such a batch: it logs it, counts it
	// (Stats.Refused), calls Config.OnRefused and acks the delivery, since
	// delivering it again would fail the same way.
	ErrMalformed = errors.New("malformed receipt batch")
	// ErrUnsupportedVersion: the batch's "v" is not WireVersion. It also
	// matches ErrMalformed.
	ErrUnsupportedVersion = errors.New("unsupported receipt wire version")
	// ErrTabMismatch: the body's "tab" is not the tab of the routing key.
	// The routing key is what the broker authorised the sender to write
	// (a tab session's token grants exactly <userKey>.<tabId>), so a body
	// naming another tab is refused. It also matches ErrMalformed.
	ErrTabMismatch = errors.New("receipt batch names another tab than its routing key")
	// ErrNotReceipt: FromMessage was given a message that is not one of
	// the Subscriber's receipt messages.
	ErrNotReceipt = errors.New("not a receipt message")
	// ErrTrackerClosed: the Tracker was closed while a WaitTabs or
	// WaitUser call was waiting, or before it was called.
	ErrTrackerClosed = errors.New("receipts: tracker is closed")
	// ErrSubscriberClosed: Subscribe or SubscribeInitialize was called
	// after Close.
	ErrSubscriberClosed = errors.New("receipts: subscriber is closed")
)

// malformedError matches both ErrMalformed and a more precise reason
// (ErrUnsupportedVersion, ErrTabMismatch).
type malformedError struct {
	reason error // nil, ErrUnsupportedVersion or ErrTabMismatch
	msg    string
}

func (e *malformedError) Error() string { return "receipts: " + e.msg }

func (e *malformedError) Is(target error) bool {
	return target == ErrMalformed || (e.reason != nil && target == e.reason)
}
