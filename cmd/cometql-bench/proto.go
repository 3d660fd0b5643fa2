package main

import "time"

// The parent and its workers talk in JSON lines: commands on the worker's
// stdin, events on its stdout (stderr is the worker's log, passed through).
//
//	parent → worker                          worker → parent
//	{"op":"init","spec":{...}}               {"ev":"progress",...}  (every second while connecting/churning)
//	                                         {"ev":"ready",...}     (all its connections tried)
//	{"op":"mark","id":N,"reset":bool}        {"ev":"mark","id":N,"mark":{...}}
//	{"op":"expect","ok_per_pipe":[...]}      (no reply)
//	{"op":"report","id":N}                   {"ev":"report","id":N,"report":{...}}
//	{"op":"churn_start"} / {"op":"churn_stop","id":N}   {"ev":"churn_stopped","id":N}
//	{"op":"close","id":N}                    {"ev":"closed","id":N}, then exit
//	                                         {"ev":"seen","seen":[...]}  (every few ms with seen_streams)
//	                                         {"ev":"error","msg":...}  (fatal)
//
// A worker whose stdin reaches EOF closes everything and exits, so a dead
// parent never leaves workers behind (on Linux they also get SIGKILL).

// workerEnv, set to 1 in the environment, makes the binary run as a worker.
const workerEnv = "COMETQL_BENCH_WORKER"

// Worker roles.
const (
	roleSubs  = "subs"  // hold subscribers: connect, subscribe, read
	roleChurn = "churn" // connect + subscribe + close, in a loop
)

// workerSpec is everything a worker needs to know.
type workerSpec struct {
	Worker             int           `json:"worker"`
	Role               string        `json:"role"`
	Transport          string        `json:"transport"` // ws | lp
	HTTPAddr           string        `json:"http"`
	PathPrefix         string        `json:"path_prefix,omitempty"`
	Origin             string        `json:"origin,omitempty"`
	Key                string        `json:"key,omitempty"` // sesion value
	UserID             int64         `json:"user_id,omitempty"`
	DevID              int64         `json:"dev_id,omitempty"`
	First              int           `json:"first"` // global index of the first subscriber
	Count              int           `json:"count"` // subscribers (roleSubs) or churn loops (roleChurn)
	PipePrefix         string        `json:"pipe_prefix"`
	Pipes              int           `json:"pipes"` // subscriber i subscribes to pipe i % Pipes
	Src                []string      `json:"src,omitempty"`
	ConnectConcurrency int           `json:"connect_concurrency"`
	ConnectTimeout     time.Duration `json:"connect_timeout"`
	ConnectRetries     int           `json:"connect_retries"`
	ReadBuffer         int           `json:"read_buffer"`
	WriteBuffer        int           `json:"write_buffer"`
	// SeenStreams > 0 makes the worker send "seen" events: for each of
	// that many publisher streams, the highest seq all its live
	// subscribers have received (the publishers' delivery window).
	SeenStreams int `json:"seen_streams,omitempty"`
}

type command struct {
	Op        string      `json:"op"`
	ID        int         `json:"id,omitempty"`
	Reset     bool        `json:"reset,omitempty"`
	Spec      *workerSpec `json:"spec,omitempty"`
	OKPerPipe []uint64    `json:"ok_per_pipe,omitempty"`
}

type event struct {
	Ev        string        `json:"ev"`
	Worker    int           `json:"worker"`
	ID        int           `json:"id,omitempty"`
	Connected int64         `json:"connected,omitempty"`
	Failed    int64         `json:"failed,omitempty"`
	Ops       uint64        `json:"ops,omitempty"`
	Mark      *markStats    `json:"mark,omitempty"`
	Report    *workerReport `json:"report,omitempty"`
	Msg       string        `json:"msg,omitempty"`
	Seen      []uint64      `json:"seen,omitempty"`
}

// markStats are a worker's counters at one instant.
type markStats struct {
	At          int64  `json:"at"` // unix nanos
	Deliveries  uint64 `json:"deliveries"`
	Disconnects int64  `json:"disconnects"`
	Live        int64  `json:"live"`
	Ops         uint64 `json:"ops"`
	OpErrors    uint64 `json:"op_errors"`
	CPUTicks    uint64 `json:"cpu_ticks"`
}

// workerReport is a worker's account of its subscribers (or churn loops).
type workerReport struct {
	Connected    int64      `json:"connected"`
	Failed       int64      `json:"failed"`
	Disconnects  int64      `json:"disconnects"`
	ConnectStart int64      `json:"connect_start"` // unix nanos: first dial
	ConnectEnd   int64      `json:"connect_end"`   // unix nanos: last connection ready
	Connect      *histogram `json:"connect"`       // dial to subscribed, ns
	Deliveries   uint64     `json:"deliveries"`
	Expected     uint64     `json:"expected"`
	Unique       uint64     `json:"unique"`
	Lost         uint64     `json:"lost"`
	Duplicated   uint64     `json:"duplicated"`
	OutOfOrder   uint64     `json:"out_of_order"`
	ErrorFrames  uint64     `json:"error_frames"`
	BadFrames    uint64     `json:"bad_frames"`
	PollErrors   uint64     `json:"poll_errors,omitempty"`
	Latency      *histogram `json:"latency"` // delivery latency since the last reset, ns
	Ops          uint64     `json:"ops"`
	OpErrors     uint64     `json:"op_errors"`
	OpLatency    *histogram `json:"op_latency"`
	Errors       []string   `json:"errors,omitempty"` // a few samples
	CPUTicks     uint64     `json:"cpu_ticks"`
	RSSKB        int64      `json:"rss_kb"`
}
