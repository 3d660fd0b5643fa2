package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
)

// result is the one JSON line a run prints.
type result struct {
	Scenario  string         `json:"scenario"`
	Label     string         `json:"label,omitempty"`
	Timestamp string         `json:"timestamp"`
	Commit    string         `json:"commit,omitempty"`
	Params    map[string]any `json:"params"`
	Results   results        `json:"results"`
	Server    *serverReport  `json:"server,omitempty"`
	Bench     benchReport    `json:"bench"`
	Errors    []string       `json:"errors,omitempty"`
}

type results struct {
	Connections *connResults     `json:"connections,omitempty"`
	Idle        *idleResults     `json:"idle,omitempty"`
	Publish     *publishResults  `json:"publish,omitempty"`
	Delivery    *deliveryResults `json:"delivery,omitempty"`
	Churn       *churnResults    `json:"churn,omitempty"`
	Soak        *soakResults     `json:"soak,omitempty"`
}

type connResults struct {
	Requested   int            `json:"requested"`
	Connected   int64          `json:"connected"`
	Failed      int64          `json:"failed"`
	PerSec      float64        `json:"per_s"`
	Seconds     float64        `json:"seconds"`
	LatencyMS   latencySummary `json:"latency_ms"`
	Disconnects int64          `json:"disconnects"`
	ServerCPUS  float64        `json:"server_cpu_s"` // server CPU seconds spent while connecting
	Workers     int            `json:"workers"`
	SourceAddrs int            `json:"source_addrs"`
}

type idleResults struct {
	RSSPerConnBytes   float64  `json:"rss_per_conn_bytes"`
	GoroutinesPerConn *float64 `json:"goroutines_per_conn,omitempty"` // when /metrics has go_goroutines
	FDsPerConn        float64  `json:"fds_per_conn"`
}

type publishResults struct {
	Published  uint64         `json:"published"` // acknowledged, whole run
	InWindow   uint64         `json:"in_window"`
	Errors     uint64         `json:"errors"`
	PerSec     float64        `json:"per_s"`
	LatencyMS  latencySummary `json:"latency_ms"` // INSERT round trip, window
	FirstError string         `json:"first_error,omitempty"`
}

type deliveryResults struct {
	Subscribers  int64          `json:"subscribers"` // ready when publishing started
	Expected     uint64         `json:"expected"`    // acknowledged publishes x their pipe's subscribers
	Received     uint64         `json:"received"`
	Lost         uint64         `json:"lost"`
	Duplicated   uint64         `json:"duplicated"`
	OutOfOrder   uint64         `json:"out_of_order"`
	PerSec       float64        `json:"per_s"` // deliveries per second in the window
	LatencyMS    latencySummary `json:"latency_ms"`
	ErrorFrames  uint64         `json:"error_frames"`
	BadFrames    uint64         `json:"bad_frames"`
	PollErrors   uint64         `json:"poll_errors,omitempty"`
	DrainSeconds float64        `json:"drain_s"`
}

type churnResults struct {
	Ops       uint64         `json:"ops"`
	Errors    uint64         `json:"errors"`
	PerSec    float64        `json:"per_s"`
	LatencyMS latencySummary `json:"latency_ms"`
}

type soakResults struct {
	Samples    int        `json:"samples"`
	RSSKB      driftStat  `json:"rss_kb"`
	Goroutines *driftStat `json:"goroutines,omitempty"`
	FDs        driftStat  `json:"fds"`
	// Series holds [seconds since start, rss kB, goroutines (-1 unknown), fds].
	Series [][4]int64 `json:"series"`
}

type driftStat struct {
	Start    int64   `json:"start"`
	End      int64   `json:"end"`
	Max      int64   `json:"max"`
	DriftPct float64 `json:"drift_pct"`
}

// newDrift summarizes a series: start, end, max and (end-start)/start.
func newDrift(vals []int64) driftStat {
	if len(vals) == 0 {
		return driftStat{}
	}
	d := driftStat{Start: vals[0], End: vals[len(vals)-1], Max: vals[0]}
	for _, v := range vals {
		d.Max = max(d.Max, v)
	}
	if d.Start != 0 {
		d.DriftPct = round3(float64(d.End-d.Start) / float64(d.Start) * 100)
	}
	return d
}

type serverReport struct {
	PID              int     `json:"pid"`
	RSSBeforeKB      int64   `json:"rss_before_kb"`
	RSSAfterKB       int64   `json:"rss_after_kb"`
	RSSPeakKB        int64   `json:"rss_peak_kb"` // VmHWM
	RSSEndKB         int64   `json:"rss_end_kb"`  // after the clients closed
	CPUPct           float64 `json:"cpu_pct"`     // of one core, over the window
	CPUSeconds       float64 `json:"cpu_s"`
	FDsBefore        int     `json:"fds_before"`
	FDsAfter         int     `json:"fds_after"`
	FDsEnd           int     `json:"fds_end"`
	Threads          int     `json:"threads"`
	GoroutinesBefore *int    `json:"goroutines_before,omitempty"`
	GoroutinesAfter  *int    `json:"goroutines_after,omitempty"`
	GoroutinesEnd    *int    `json:"goroutines_end,omitempty"`
}

type benchReport struct {
	Workers int     `json:"workers"`
	RSSKB   int64   `json:"rss_kb"`  // workers' RSS, summed
	CPUPct  float64 `json:"cpu_pct"` // workers + parent over the window, of one core
}

func optInt(v int) *int {
	if v < 0 {
		return nil
	}
	return &v
}

// tableRow is one row of the Markdown table.
type tableRow struct {
	key     string
	primary float64
	cells   []string
}

var tableHeader = []string{"scenario", "transport", "conns", "throughput", "p50 ms", "p90 ms", "p99 ms", "max ms", "insert p50/p99 ms", "lost", "dup", "ooo", "srv CPU %", "srv RSS MB", "RSS/conn B"}

// row renders a result as a table row; primary is the number medians sort by.
func (r *result) row() tableRow {
	f0 := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	f2 := func(v float64) string { return fmt.Sprintf("%.2f", v) }
	name := r.Scenario
	if r.Label != "" {
		name = r.Label
	}
	transport, _ := r.Params["transport"].(string)
	cells := make([]string, len(tableHeader))
	for i := range cells {
		cells[i] = "-"
	}
	cells[0], cells[1] = name, transport
	var lat *latencySummary
	var primary float64
	res := &r.Results
	if c := res.Connections; c != nil {
		cells[2] = fmt.Sprint(c.Connected)
	}
	switch {
	case res.Idle != nil:
		primary = res.Idle.RSSPerConnBytes
		cells[3] = f0(res.Connections.PerSec) + " conn/s"
		lat = &res.Connections.LatencyMS
		cells[14] = f0(res.Idle.RSSPerConnBytes)
	case res.Churn != nil:
		primary = res.Churn.PerSec
		cells[3] = f0(res.Churn.PerSec) + " ops/s"
		lat = &res.Churn.LatencyMS
	case res.Delivery != nil:
		d := res.Delivery
		primary = d.PerSec
		cells[3] = f0(d.PerSec) + " deliv/s"
		if p := res.Publish; p != nil {
			if b, _ := r.Params["batch"].(float64); b > 1 {
				cells[3] += " (" + f0(p.PerSec) + " msg/s in INSERTs of " + f0(b) + " rows)"
			} else {
				cells[3] += " (" + f0(p.PerSec) + " ins/s)"
			}
			cells[8] = f2(p.LatencyMS.P50) + " / " + f2(p.LatencyMS.P99)
			if r.Scenario == scPublish || r.Scenario == scHistory {
				primary = p.PerSec
			}
		}
		lat = &d.LatencyMS
		cells[9], cells[10], cells[11] = fmt.Sprint(d.Lost), fmt.Sprint(d.Duplicated), fmt.Sprint(d.OutOfOrder)
	}
	if lat != nil {
		cells[4], cells[5], cells[6], cells[7] = f2(lat.P50), f2(lat.P90), f2(lat.P99), f2(lat.Max)
	}
	if s := r.Server; s != nil {
		cells[12] = fmt.Sprintf("%.1f", s.CPUPct)
		cells[13] = fmt.Sprintf("%.1f", float64(s.RSSAfterKB)/1024)
	}
	if res.Soak != nil {
		cells[0] += fmt.Sprintf(" (soak: RSS drift %+.1f%%, fds drift %+.1f%%)", res.Soak.RSSKB.DriftPct, res.Soak.FDs.DriftPct)
	}
	return tableRow{key: name + "/" + transport, primary: primary, cells: cells}
}

// writeTable prints results as a Markdown table; with median, rows with
// the same label (or scenario and transport) collapse into the run with
// the median primary number (throughput; RSS per connection for idle).
func writeTable(w io.Writer, rs []result, median bool) {
	var rows []tableRow
	for i := range rs {
		rows = append(rows, rs[i].row())
	}
	if median {
		var order []string
		groups := map[string][]tableRow{}
		for _, r := range rows {
			if _, ok := groups[r.key]; !ok {
				order = append(order, r.key)
			}
			groups[r.key] = append(groups[r.key], r)
		}
		rows = rows[:0]
		for _, k := range order {
			g := groups[k]
			sort.SliceStable(g, func(i, j int) bool { return g[i].primary < g[j].primary })
			m := g[(len(g)-1)/2]
			if len(g) > 1 {
				m.cells[0] += fmt.Sprintf(" (median of %d)", len(g))
			}
			rows = append(rows, m)
		}
	}
	fmt.Fprintln(w, "| "+strings.Join(tableHeader, " | ")+" |")
	seps := make([]string, len(tableHeader))
	for i := range seps {
		seps[i] = "---"
		if i >= 2 {
			seps[i] = "---:"
		}
	}
	fmt.Fprintln(w, "| "+strings.Join(seps, " | ")+" |")
	for _, r := range rows {
		fmt.Fprintln(w, "| "+strings.Join(r.cells, " | ")+" |")
	}
}

// readResults reads result lines (other lines are skipped).
func readResults(r io.Reader) ([]result, error) {
	var out []result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var res result
		if err := json.Unmarshal([]byte(line), &res); err != nil || res.Scenario == "" {
			continue
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// tableMain is "cometql-bench table [--median] [files]".
func tableMain(args []string, stdout, stderr io.Writer) int {
	median := false
	var files []string
	for _, a := range args {
		switch a {
		case "--median", "-median":
			median = true
		default:
			files = append(files, a)
		}
	}
	var rs []result
	if len(files) == 0 {
		r, err := readResults(os.Stdin)
		if err != nil {
			fmt.Fprintf(stderr, "cometql-bench: %v\n", err)
			return 1
		}
		rs = r
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			fmt.Fprintf(stderr, "cometql-bench: %v\n", err)
			return 1
		}
		r, err := readResults(fh)
		fh.Close()
		if err != nil {
			fmt.Fprintf(stderr, "cometql-bench: %s: %v\n", f, err)
			return 1
		}
		rs = append(rs, r...)
	}
	writeTable(stdout, rs, median)
	return 0
}

// perSec is n over seconds, rounded; 0 for an empty window.
func perSec(n float64, seconds float64) float64 {
	if seconds <= 0 {
		return 0
	}
	return math.Round(n/seconds*10) / 10
}
