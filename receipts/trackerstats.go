package receipts

// TrackerStats counts what a Tracker recorded since it was made (Kept is
// the number kept now).
type TrackerStats struct {
	// Receipts is the number of receipts recorded: new (message id, tab
	// id) pairs. Each woke the waits it completed and went to
	// TrackerConfig.OnReceipt.
	Receipts uint64
	// Duplicates is the number of receipts dropped because a receipt of
	// the same message id and tab id was still kept (a tab sent its batch
	// again, or the Subscriber handed out a redelivered batch).
	Duplicates uint64
	// Met is the number of Expect and ExpectUser calls a receipt settled,
	// at once (it had already arrived) or within their duration.
	Met uint64
	// Missed is the number of Expect and ExpectUser calls whose onMissing
	// ran: the fallbacks taken.
	Missed uint64
	// Kept is the number of receipts kept now (at most
	// TrackerConfig.MaxEntries, none older than Retention).
	Kept int
}
