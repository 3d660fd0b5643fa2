package main

import (
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// Scenarios.
const (
	scIdle      = "idle"
	scFanout    = "fanout"
	scPublish   = "publish"
	scManyPipes = "manypipes"
	scHistory   = "history"
	scChurn     = "churn"
	scSoak      = "soak" // fanout --soak
)

var scenarios = []string{scIdle, scFanout, scPublish, scManyPipes, scHistory, scChurn, scSoak}

// defaultWindow is --window at max rate: well under the server's default
// outbox of 1000 frames per connection, so a max-rate run measures how fast
// subscribers receive rather than how fast a server disconnects those that
// fall behind.
const defaultWindow = 400

// options are the command line of one run.
type options struct {
	Scenario string

	HTTPAddr   string
	QLAddr     string
	User       string
	Password   string
	Key        string
	UserID     int64
	DevID      int64
	PathPrefix string
	Origin     string
	Transport  string

	Subs          int
	Pipes         int
	Publishers    int
	Rate          float64
	Size          int
	Event         string
	SQLMode       string
	HistoryLength int
	Concurrency   int
	Batch         int
	Window        int

	Duration      time.Duration
	Warmup        time.Duration
	Drain         time.Duration
	Settle        time.Duration
	SettleTimeout time.Duration
	Hold          time.Duration
	Soak          bool
	SampleEvery   time.Duration

	Workers            int
	PerWorker          int
	Src                string
	ConnsPerAddr       int
	ConnectConcurrency int
	ConnectTimeout     time.Duration
	ConnectRetries     int
	ReadBuffer         int
	WriteBuffer        int

	ServerPID  int
	MetricsURL string
	Commit     string
	Label      string
	Prefix     string
	Quiet      bool
}

func usage(w io.Writer) {
	fmt.Fprint(w, `cometql-bench: load generator for cometql (and CppComet-compatible servers)

usage: cometql-bench <scenario> [flags]
       cometql-bench table [--median] [file.jsonl ...]   (Markdown table of result lines; stdin when no file)

scenarios:
  idle       --subs N connections, each subscribed to one of --pipes pipes; after they
             settle: server RSS per connection, connect rate (--transport ws|lp)
  fanout     1 pipe x --subs subscribers; --publishers MySQL connections publish --size-byte
             messages at max or --rate msg/s; deliveries/s, lost/dup/out-of-order, latency
             (--transport lp: parked long-poll sessions; --soak: see soak)
  publish    --publishers C MySQL connections, --pipes pipes with 1 subscriber each:
             INSERT/s and INSERT latency, plus delivery latency
  manypipes  --pipes P pipes x 1 subscriber, random publishes
  history    publish into logging pipes (INSERT INTO pipes_settings ... length --history-length)
  churn      --concurrency K loops of connect + subscribe + close; ops/s
  soak       fanout at --rate for --duration, sampling server RSS/goroutines/fds every
             --sample-interval; start/end/max and drift

One JSON line per run goes to stdout, progress to stderr.

flags:
`)
	fs, _ := newFlagSet(&options{}, io.Discard)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func newFlagSet(o *options, out io.Writer) (*flag.FlagSet, func() map[string]bool) {
	fs := flag.NewFlagSet("cometql-bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.HTTPAddr, "http", "127.0.0.1:8087", "server HTTP address (WebSocket, long-poll, /metrics)")
	fs.StringVar(&o.QLAddr, "ql", "127.0.0.1:3300", "server CometQL (MySQL protocol) address")
	fs.StringVar(&o.User, "user", "root", "CometQL user")
	fs.StringVar(&o.Password, "password", "", "CometQL password")
	fs.StringVar(&o.Key, "key", "", "browser sesion value (empty: anonymous)")
	fs.Int64Var(&o.UserID, "myid", 0, "browser myid (0: anonymous)")
	fs.Int64Var(&o.DevID, "devid", 0, "browser devid")
	fs.StringVar(&o.PathPrefix, "path-prefix", "", "HTTP path prefix, e.g. /comet-server")
	fs.StringVar(&o.Origin, "origin", "", "Origin header of browser connections (default http://<http addr>)")
	fs.StringVar(&o.Transport, "transport", "ws", "subscriber transport: ws or lp (long-poll)")

	fs.IntVar(&o.Subs, "subs", 0, "subscriber connections (default: idle 2000, fanout 1000, else one per pipe)")
	fs.IntVar(&o.Pipes, "pipes", 0, "pipes (default: idle 100, fanout 1, publish 32, manypipes 1000, history 8, churn 64)")
	fs.IntVar(&o.Publishers, "publishers", 0, "MySQL publisher connections (default: fanout 4, publish 32, manypipes 8, history 8)")
	fs.Float64Var(&o.Rate, "rate", 0, "target publishes per second over all publishers; 0 = as fast as the server answers (soak default 1000)")
	fs.IntVar(&o.Size, "size", 100, "message size in bytes")
	fs.StringVar(&o.Event, "event", "bench", "event name of published messages")
	fs.StringVar(&o.SQLMode, "sql", sqlPrepared, "publish SQL: prepared (placeholders, prepared once per connection), interp (placeholders, interpolateParams=true: literal SQL on the wire), literal (SQL text built by the tool)")
	fs.IntVar(&o.Batch, "batch", 1, "messages per INSERT: rows of one multi-row INSERT, as a backend publishing many messages at once sends them")
	fs.IntVar(&o.Window, "window", -1, "single-pipe runs: publishing waits while a live subscriber has not yet received this many of the messages published (split over the publishers); 0: never wait (default: 400 at max rate, 0 at a fixed --rate)")
	fs.IntVar(&o.HistoryLength, "history-length", 1000, "history: pipes_settings length")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "churn: concurrent connect+subscribe+close loops")

	fs.DurationVar(&o.Duration, "duration", 0, "measuring window (default 10s; soak 10m)")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "load before the measuring window")
	fs.DurationVar(&o.Drain, "drain", 5*time.Second, "how long to wait after publishing for deliveries to arrive (ends early when none are missing)")
	fs.DurationVar(&o.Settle, "settle", 0, "wait after connecting before measuring (default: idle 5s, else 1s)")
	fs.DurationVar(&o.SettleTimeout, "settle-timeout", 60*time.Second, "how long to wait for the server to count every subscription (SELECT ... FROM pipes)")
	fs.DurationVar(&o.Hold, "hold", 0, "idle: keep the connections this long after measuring, then count disconnects")
	fs.BoolVar(&o.Soak, "soak", false, "fanout: soak mode (as the soak scenario)")
	fs.DurationVar(&o.SampleEvery, "sample-interval", 10*time.Second, "soak: sampling interval")

	fs.IntVar(&o.Workers, "workers", 0, "worker processes holding connections (default: enough for --per-worker each)")
	fs.IntVar(&o.PerWorker, "per-worker", 10000, "connections per worker process (stay under the per-process open-file cap)")
	fs.StringVar(&o.Src, "src", "", "source addresses: a-b range, comma list, or none (default: 127.0.0.2 up, --conns-per-addr each, for a loopback server)")
	fs.IntVar(&o.ConnsPerAddr, "conns-per-addr", 1000, "connections per source address (server's per-IP cap and ~28k ports per address)")
	fs.IntVar(&o.ConnectConcurrency, "connect-concurrency", 128, "connections being set up at once, per worker")
	fs.DurationVar(&o.ConnectTimeout, "connect-timeout", 15*time.Second, "timeout of one connection attempt")
	fs.IntVar(&o.ConnectRetries, "connect-retries", 2, "retries of a failed connection")
	fs.IntVar(&o.ReadBuffer, "read-buffer", 1024, "WebSocket read buffer per connection, bytes")
	fs.IntVar(&o.WriteBuffer, "write-buffer", 512, "WebSocket write buffer (pooled), bytes")

	fs.IntVar(&o.ServerPID, "server-pid", 0, "server process id for RSS/CPU/fds (default: the process listening on the HTTP port)")
	fs.StringVar(&o.MetricsURL, "metrics-url", "", "Prometheus metrics URL for go_goroutines (default http://<http addr>/metrics; none to skip)")
	fs.StringVar(&o.Commit, "commit", "", "git commit recorded in the result")
	fs.StringVar(&o.Label, "label", "", "label recorded in the result (table rows group by it)")
	fs.StringVar(&o.Prefix, "prefix", "", "pipe name prefix (default bench_<random>_)")
	fs.BoolVar(&o.Quiet, "quiet", false, "less progress on stderr")
	set := func() map[string]bool {
		m := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { m[f.Name] = true })
		return m
	}
	return fs, set
}

// parseOptions parses "<scenario> [flags]" and applies scenario defaults.
func parseOptions(args []string, stderr io.Writer) (*options, error) {
	if len(args) == 0 {
		usage(stderr)
		return nil, flag.ErrHelp
	}
	o := &options{Scenario: args[0]}
	switch o.Scenario {
	case "-h", "-help", "--help", "help":
		usage(stderr)
		return nil, flag.ErrHelp
	}
	known := false
	for _, s := range scenarios {
		known = known || s == o.Scenario
	}
	if !known {
		return nil, fmt.Errorf("unknown scenario %q (want one of %s)", o.Scenario, strings.Join(scenarios, ", "))
	}
	fs, setFn := newFlagSet(o, stderr)
	fs.Usage = func() { usage(stderr) }
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := setFn()
	if o.Scenario == scSoak {
		o.Scenario, o.Soak = scFanout, true
	}
	def := func(name string, p *int, v int) {
		if !set[name] {
			*p = v
			set[name] = true // the first default given wins
		}
	}
	switch o.Scenario {
	case scIdle:
		def("subs", &o.Subs, 2000)
		def("pipes", &o.Pipes, 100)
	case scFanout:
		def("subs", &o.Subs, 1000)
		def("pipes", &o.Pipes, 1)
		def("publishers", &o.Publishers, 4)
		if o.Soak && !set["rate"] {
			o.Rate = 1000
		}
	case scPublish:
		def("pipes", &o.Pipes, 32)
		def("publishers", &o.Publishers, 32)
	case scManyPipes:
		def("pipes", &o.Pipes, 1000)
		def("publishers", &o.Publishers, 8)
	case scHistory:
		def("pipes", &o.Pipes, 8)
		def("publishers", &o.Publishers, 8)
	case scChurn:
		def("pipes", &o.Pipes, 64)
	}
	def("subs", &o.Subs, o.Pipes)
	if o.Window < 0 {
		o.Window = 0
		if o.Rate == 0 && o.Pipes == 1 {
			o.Window = defaultWindow
		}
	}
	if !set["duration"] {
		o.Duration = 10 * time.Second
		if o.Soak {
			o.Duration = 10 * time.Minute
		}
	}
	if !set["settle"] {
		o.Settle = time.Second
		if o.Scenario == scIdle {
			o.Settle = 5 * time.Second
		}
	}
	if o.Origin == "" {
		o.Origin = "http://" + o.HTTPAddr
	}
	if o.MetricsURL == "" {
		o.MetricsURL = "http://" + o.HTTPAddr + o.PathPrefix + "/metrics"
	} else if o.MetricsURL == "none" {
		o.MetricsURL = ""
	}
	if o.Prefix == "" {
		o.Prefix = "bench_" + randomToken(6) + "_"
	}
	return o, o.validate()
}

func (o *options) validate() error {
	var errs []error
	if o.Transport != "ws" && o.Transport != "lp" {
		errs = append(errs, fmt.Errorf("--transport %q: want ws or lp", o.Transport))
	}
	switch o.SQLMode {
	case sqlPrepared, sqlInterp, sqlLiteral:
	default:
		errs = append(errs, fmt.Errorf("--sql %q: want prepared, interp or literal", o.SQLMode))
	}
	if o.Scenario != scChurn && o.Subs <= 0 {
		errs = append(errs, errors.New("--subs must be positive"))
	}
	if o.Pipes <= 0 {
		errs = append(errs, errors.New("--pipes must be positive"))
	}
	if len(o.Prefix)+len(fmt.Sprint(o.Pipes)) > 64 {
		errs = append(errs, errors.New("--prefix too long for 64-character pipe names"))
	}
	for _, c := range o.Prefix {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			errs = append(errs, fmt.Errorf("--prefix %q: pipe names are [A-Za-z0-9_-]", o.Prefix))
			break
		}
	}
	switch o.Scenario {
	case scFanout, scPublish, scManyPipes, scHistory:
		if o.Publishers <= 0 {
			errs = append(errs, errors.New("--publishers must be positive"))
		}
		if o.Duration <= 0 {
			errs = append(errs, errors.New("--duration must be positive"))
		}
	case scChurn:
		if o.Concurrency <= 0 {
			errs = append(errs, errors.New("--concurrency must be positive"))
		}
	}
	if o.Scenario == scHistory && (o.HistoryLength < 1 || o.HistoryLength > 1000) {
		errs = append(errs, errors.New("--history-length must be 1..1000"))
	}
	if o.PerWorker <= 0 {
		errs = append(errs, errors.New("--per-worker must be positive"))
	}
	if o.Batch < 1 || o.Batch > 1000 {
		errs = append(errs, errors.New("--batch must be 1..1000"))
	}
	if o.Rate < 0 || o.Size < 0 {
		errs = append(errs, errors.New("--rate and --size must not be negative"))
	}
	if o.Soak && o.SampleEvery <= 0 {
		errs = append(errs, errors.New("--sample-interval must be positive"))
	}
	return errors.Join(errs...)
}

// params is what the result line records of the options.
func (o *options) params() map[string]any {
	p := map[string]any{
		"http":      o.HTTPAddr,
		"transport": o.Transport,
	}
	if o.DevID != 0 {
		p["devid"] = o.DevID
	}
	switch o.Scenario {
	case scIdle:
		p["subs"], p["pipes"], p["settle"] = o.Subs, o.Pipes, o.Settle.String()
		if o.Hold > 0 {
			p["hold"] = o.Hold.String()
		}
	case scChurn:
		p["concurrency"], p["pipes"] = o.Concurrency, o.Pipes
		p["duration"], p["warmup"] = o.Duration.String(), o.Warmup.String()
	default:
		p["ql"] = o.QLAddr
		p["subs"], p["pipes"], p["publishers"] = o.Subs, o.Pipes, o.Publishers
		p["rate"], p["size"], p["sql"] = o.Rate, o.Size, o.SQLMode
		p["duration"], p["warmup"], p["drain"] = o.Duration.String(), o.Warmup.String(), o.Drain.String()
		if o.Scenario == scHistory {
			p["history_length"] = o.HistoryLength
		}
		if o.Batch > 1 {
			p["batch"] = o.Batch
		}
		if o.Window > 0 && o.Pipes == 1 {
			p["window"] = o.Window
		}
		if o.Soak {
			p["soak"], p["sample_interval"] = true, o.SampleEvery.String()
		}
	}
	return p
}

// randomToken is n random characters of [a-z0-9].
func randomToken(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
