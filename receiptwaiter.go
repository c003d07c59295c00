package durablews

import (
	"context"

	"github.com/durablews/durablews/receipts"
)

// ReceiptWaiter waits for delivery receipts from browser tabs (package
// receipts): WaitTabs returns once k tabs confirmed they handled and acked
// message msgID, or with an error when ctx ends first. *receipts.Tracker
// implements it; Forward.Receipts takes one.
type ReceiptWaiter interface {
	WaitTabs(ctx context.Context, msgID string, k int) ([]receipts.Receipt, error)
}

var _ ReceiptWaiter = (*receipts.Tracker)(nil)
