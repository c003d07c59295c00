package receipts

// Stats counts what a Subscriber read since it was made.
type Stats struct {
	// Batches is the number of batch deliveries read, refused ones
	// included (a redelivered batch counts again).
	Batches uint64
	// Receipts is the number of receipts of accepted batches handed to
	// subscribers (again when a batch is redelivered).
	Receipts uint64
	// Refused is the number of batches refused: malformed, or naming
	// another tab in their body than in their routing key. Each was
	// logged, passed to Config.OnRefused and dropped (acked).
	Refused uint64
}
