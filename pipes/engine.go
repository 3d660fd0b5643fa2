package pipes

import "context"

// Engine holds the state that is shared between nodes and the data that must
// survive restarts: message routing between nodes, history, log settings,
// offline queues, users_time, presence counts and membership. The memory
// engine serves one node and persists through a Store; the Redis engine
// serves a cluster.
//
// Every method is safe for concurrent use. Methods taking a dev id operate
// inside that tenant only.
type Engine interface {
	// Run starts the engine. Deliveries for this node's sessions go to h.
	Run(h Handler) error
	// Close stops the engine and flushes what it persists.
	Close(ctx context.Context) error
	// Ready returns nil when the engine can serve (store open, Redis
	// reachable), else the reason it cannot.
	Ready() error
	// NodeName is this node's name, the prefix of its session keys.
	NodeName() string

	// Publish assigns m.ID and m.Time (when zero), stores m in the pipe's
	// history when the pipe logs (assigning m.Seq; it returns only once the
	// message is durable), then delivers it to every node, this one
	// included, through Handler.Deliver, in publish order per pipe.
	// Delivered is the number of connections it reached (cluster-wide where
	// known).
	Publish(ctx context.Context, m *Message) (delivered int, err error)

	// SendPrivate delivers a private message to every live connection of
	// the user on every node (Handler.DeliverPrivate); when the user has
	// none, it queues the message (queued=true), bounded and expiring.
	SendPrivate(ctx context.Context, dev, user int64, event, data string) (delivered int, queued bool, err error)

	// Watch and Unwatch tell the engine that this node has gained its first
	// or lost its last local subscriber of a pipe (Redis subscribes to the
	// pipe's channel only while watched). Calls are balanced by the hub.
	Watch(dev int64, pipe string)
	Unwatch(dev int64, pipe string)

	// Join and Leave record a subscribed connection cluster-wide.
	Join(ctx context.Context, dev int64, pipe string, m Member) error
	Leave(ctx context.Context, dev int64, pipe string, m Member) error
	// Members lists the subscribed connections of a pipe, cluster-wide.
	Members(ctx context.Context, dev int64, pipe string) ([]Member, error)
	// MemberCount counts the subscribed connections of a pipe, cluster-wide.
	MemberCount(ctx context.Context, dev int64, pipe string) (int, error)
	// ActivePipes lists every pipe with at least one subscriber.
	ActivePipes(ctx context.Context, dev int64) ([]PipeCount, error)
	// Online counts a tenant's open browser connections cluster-wide (other
	// nodes' counts may be a heartbeat old).
	Online(ctx context.Context, dev int64) (int, error)

	// UserConnect records an authorized connection of a user. When the user
	// already has max connections cluster-wide it refuses (ok=false) and
	// changes nothing. first reports the user's first live connection; then
	// users_time becomes 0 and the offline queue is returned, in order. The
	// messages stay queued until AckQueue says they reached the connection,
	// so a crash in between delivers them again rather than losing them.
	UserConnect(ctx context.Context, dev, user int64, key SessionKey, max int) (ok, first bool, queue []QueuedMessage, err error)
	// AckQueue removes a user's queued messages with an index up to upTo.
	AckQueue(ctx context.Context, dev, user, upTo int64) error
	// UserDisconnect undoes UserConnect; last reports the user's last live
	// connection, when users_time becomes the current time.
	UserDisconnect(ctx context.Context, dev, user int64, key SessionKey) (last bool, err error)
	// UsersTime returns users_time rows for ids, one per id (Time -1 for
	// never seen); with ids nil, every known user.
	UsersTime(ctx context.Context, dev int64, ids []int64) ([]UserTime, error)

	// Kick asks every node to close the live connections of a user, or,
	// with token non-empty, only those authenticated by that token.
	Kick(ctx context.Context, dev, user int64, token string) error

	// History returns the kept messages of a pipe with Seq > since, oldest
	// first.
	History(ctx context.Context, dev int64, pipe string, since int64) ([]Message, error)
	// ClearHistory removes a pipe's history; n is the number removed.
	ClearHistory(ctx context.Context, dev int64, pipe string) (n int64, err error)
	// DeleteMessage removes one stored message by id.
	DeleteMessage(ctx context.Context, dev int64, id string) (n int64, err error)
	// LogLength is the pipe's history length (0 = not logging).
	LogLength(ctx context.Context, dev int64, pipe string) (int, error)
	// SetLogLength sets it; 0 turns logging off and clears the history.
	SetLogLength(ctx context.Context, dev int64, pipe string, length int) error
	// LogSettings lists the pipes that log.
	LogSettings(ctx context.Context, dev int64) ([]PipeSetting, error)

	// Queue returns a user's undelivered private messages, oldest first;
	// user 0 means every user's.
	Queue(ctx context.Context, dev, user int64) ([]QueuedMessage, error)
	// ClearQueue empties a user's queue; n is the number removed.
	ClearQueue(ctx context.Context, dev, user int64) (n int64, err error)
}

// Handler is the hub's side of an Engine: what the engine calls to reach
// this node's sessions. Implementations must not block on network I/O.
type Handler interface {
	// Deliver hands a pipe message to this node's subscribers of the pipe
	// (except m.Exclude) and returns how many received it.
	Deliver(m *Message) int
	// DeliverPrivate hands a private message (id assigned once by the
	// engine, the same on every node) to this node's live connections of
	// the user and returns how many received it.
	DeliverPrivate(dev, user int64, id, event, data string, t int64) int
	// Kick closes this node's live connections of the user (all of them, or
	// those authenticated by token when token is non-empty).
	Kick(dev, user int64, token string)
	// LocalMembers lists this node's subscribed connections of a pipe.
	LocalMembers(dev int64, pipe string) []Member
	// LocalCount counts this node's subscribed connections of a pipe.
	LocalCount(dev int64, pipe string) int
	// LocalPipes lists this node's pipes with their local subscriber counts.
	LocalPipes(dev int64) []PipeCount
	// LocalOnline counts this node's open browser connections by tenant.
	LocalOnline() map[int64]int
}
