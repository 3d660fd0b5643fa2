package pipes

import "context"

// Store is what the memory engine persists (SQLite by default). Every write
// returns only once it is committed: it survives kill -9 of the process
// right after the call returns. Every method is safe for concurrent use.
type Store interface {
	// AppendHistory stores m (m.ID, m.Seq, m.Time set by the caller) and
	// trims the pipe's history to its newest keep messages, in one
	// transaction. It also records m.Seq as the pipe's last sequence.
	AppendHistory(ctx context.Context, m *Message, keep int) error
	// History returns a pipe's stored messages with Seq > since, oldest
	// first.
	History(ctx context.Context, dev int64, pipe string, since int64) ([]Message, error)
	// LastSeq is the highest sequence number ever stored for the pipe,
	// including messages since trimmed or cleared (sequences are never
	// reused); 0 when none.
	LastSeq(ctx context.Context, dev int64, pipe string) (int64, error)
	// ClearHistory removes a pipe's stored messages (the last sequence is
	// kept).
	ClearHistory(ctx context.Context, dev int64, pipe string) (int64, error)
	// DeleteMessage removes one stored message by id.
	DeleteMessage(ctx context.Context, dev int64, id string) (int64, error)

	// SetLogLength upserts a pipe's history length; 0 removes the setting
	// and the pipe's history.
	SetLogLength(ctx context.Context, dev int64, pipe string, length int) error
	// LogSettings lists every tenant's pipes that log, keyed by dev id.
	LogSettings(ctx context.Context) (map[int64][]PipeSetting, error)

	// Enqueue appends a private message to a user's offline queue (assigning
	// q.Index), drops expired messages and the oldest beyond max, and
	// returns how many were dropped.
	Enqueue(ctx context.Context, dev int64, q *QueuedMessage, max int) (dropped int, err error)
	// Queue lists a user's queued messages (user 0: every user's), oldest
	// first, leaving out those queued before notBefore (unix seconds).
	Queue(ctx context.Context, dev, user int64, notBefore int64) ([]QueuedMessage, error)
	// AckQueue removes a user's queued messages with an index up to upTo
	// (they reached one of the user's connections).
	AckQueue(ctx context.Context, dev, user, upTo int64) (int64, error)
	// ClearQueue removes a user's queue.
	ClearQueue(ctx context.Context, dev, user int64) (int64, error)

	// SetUserTime records users_time for a user (0 = online now).
	SetUserTime(ctx context.Context, dev, user int64, t int64) error
	// UserTimes returns the recorded users_time of ids that have one (all
	// known users of the tenant when ids is nil).
	UserTimes(ctx context.Context, dev int64, ids []int64) (map[int64]int64, error)
	// ResetOnline sets every users_time of 0 (online at the last shutdown or
	// crash) to t; called at start-up by a single node.
	ResetOnline(ctx context.Context, t int64) error

	// Close flushes pending writes and closes the store.
	Close() error
}
