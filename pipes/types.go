// Package pipes is the cometql hub: pipes, sessions, subscriptions, fan-out,
// history, presence, offline queues and delivery reports.
//
// The hub knows nothing of SQL, HTTP or SQLite. Front ends (sqlengine for
// CometQL, jsapi for browsers) call it; it reaches out through the interfaces
// it declares: Engine (memory or Redis), Store (what the memory engine
// persists), Sink (a session's transport) and UserDirectory (users_data).
package pipes

import "errors"

// Kind says how a Message is framed for browsers.
type Kind uint8

const (
	// KindPipe is an ordinary pipe message (from CometQL or a browser).
	KindPipe Kind = iota
	// KindPresence is an online/offline event on a user_status_<id> pipe.
	KindPresence
	// KindTrack is a subscription/unsubscription event on a track_* pipe;
	// its data is a JSON object {user_id, uuid} built from Member.
	KindTrack
)

// Message is one publication on a pipe. Inside the hub it is immutable once
// published.
type Message struct {
	Kind   Kind
	DevID  int64
	Pipe   string
	Event  string
	Data   string // the message text, delivered as sent
	UserID int64  // the sender's authorized user id; 0 for CometQL and anonymous senders
	ID     string // unique message id, assigned by the engine
	Seq    int64  // per-pipe sequence when the pipe logs; 0 otherwise
	Time   int64  // unix seconds, assigned by the engine when zero

	// Member is the subject of a KindTrack event.
	Member Member
	// Exclude names the session that must not receive the message (the
	// browser sender of web_pipe2, the member of its own track event). Empty
	// means none.
	Exclude SessionKey
}

// SessionKey identifies a session cluster-wide: the node name and the
// node-local session id.
type SessionKey string

// Member describes one subscribed connection, as users_in_pipes and
// track_pipe_users show it.
type Member struct {
	Session   SessionKey
	UserID    int64
	UUID      string
	UserAgent string
	IP        string
	Origin    string
	Language  string
}

// PipeCount is a pipe with its number of subscribed connections.
type PipeCount struct {
	Pipe  string
	Users int
}

// PipeSetting is a pipe's history length (pipes_settings).
type PipeSetting struct {
	Pipe   string
	Length int
}

// QueuedMessage is one private message waiting in a user's offline queue.
type QueuedMessage struct {
	UserID int64
	Index  int64 // queue position, strictly increasing per user
	Event  string
	Data   string
	Time   int64 // unix seconds when queued
}

// UserTime is a users_time row: 0 = online now, unix time = last seen,
// -1 = never seen.
type UserTime struct {
	UserID int64
	Time   int64
}

// Sentinel errors. Front ends map them to MySQL errors or sys frames.
var (
	ErrInvalidPipe     = errors.New("pipes: invalid pipe name")
	ErrInvalidEvent    = errors.New("pipes: invalid event name")
	ErrInvalidUser     = errors.New("pipes: invalid user id")
	ErrInvalidMessage  = errors.New("pipes: message is not valid UTF-8")
	ErrMessageTooLarge = errors.New("pipes: message too large")
	ErrInvalidLength   = errors.New("pipes: history length out of range")
	ErrInvalidMarker   = errors.New("pipes: invalid marker")
	ErrForbidden       = errors.New("pipes: not allowed")
	ErrRateLimited     = errors.New("pipes: rate limit exceeded")
	ErrTooManySubs     = errors.New("pipes: too many subscriptions")
	ErrTooManyDevices  = errors.New("pipes: too many connections for this user")
	ErrClosed          = errors.New("pipes: hub is closed")
	ErrNotFound        = errors.New("pipes: not found")
	ErrStore           = errors.New("pipes: storage failure")
)
