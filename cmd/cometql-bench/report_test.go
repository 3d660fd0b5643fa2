package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestMergeReports(t *testing.T) {
	h1, h2 := newHistogram(), newHistogram()
	h1.record(1e6)
	h2.record(3e6)
	evs := []event{
		{Worker: 0, Report: &workerReport{Connected: 10, Failed: 1, ConnectStart: 200, ConnectEnd: 900, Connect: h1, Latency: h1, OpLatency: newHistogram(),
			Deliveries: 100, Expected: 100, Unique: 98, Lost: 2, Duplicated: 1, OutOfOrder: 3, Errors: []string{"a"}, RSSKB: 1000, CPUTicks: 5}},
		{Worker: 1, Report: &workerReport{Connected: 20, ConnectStart: 100, ConnectEnd: 800, Connect: h2, Latency: h2, OpLatency: newHistogram(),
			Deliveries: 200, Expected: 200, Unique: 200, Errors: []string{"b"}, RSSKB: 2000, CPUTicks: 7}},
		{Worker: 2}, // no report: ignored
	}
	r := mergeReports(evs)
	if r.Connected != 30 || r.Failed != 1 || r.ConnectStart != 100 || r.ConnectEnd != 900 {
		t.Fatalf("connections %+v", r)
	}
	if r.Deliveries != 300 || r.Expected != 300 || r.Unique != 298 || r.Lost != 2 || r.Duplicated != 1 || r.OutOfOrder != 3 {
		t.Fatalf("delivery %+v", r)
	}
	if r.Latency.count() != 2 || r.Latency.max != 3e6 || r.Latency.min != 1e6 || r.Connect.count() != 2 {
		t.Fatal("histograms not merged")
	}
	if len(r.Errors) != 2 || !strings.HasPrefix(r.Errors[1], "worker 1: ") || r.RSSKB != 3000 || r.CPUTicks != 12 {
		t.Fatalf("errors %v rss %d cpu %d", r.Errors, r.RSSKB, r.CPUTicks)
	}
	// Reports survive the JSON trip between processes.
	b, err := json.Marshal(event{Ev: "report", Report: evs[0].Report})
	if err != nil {
		t.Fatal(err)
	}
	var back event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Report.Latency.count() != 1 || back.Report.Lost != 2 {
		t.Fatalf("round trip %+v", back.Report)
	}
}

func TestSumMarks(t *testing.T) {
	m := sumMarks([]event{
		{Mark: &markStats{At: 5, Deliveries: 10, Ops: 1, CPUTicks: 3, Live: 4}},
		{Mark: &markStats{At: 9, Deliveries: 20, Ops: 2, CPUTicks: 4, Live: 5, Disconnects: 1}},
		{},
	})
	if m.At != 9 || m.Deliveries != 30 || m.Ops != 3 || m.CPUTicks != 7 || m.Live != 9 || m.Disconnects != 1 {
		t.Fatalf("%+v", m)
	}
}

func TestDrift(t *testing.T) {
	d := newDrift([]int64{100, 130, 120, 110})
	if d.Start != 100 || d.End != 110 || d.Max != 130 || d.DriftPct != 10 {
		t.Fatalf("%+v", d)
	}
	if (newDrift(nil) != driftStat{}) {
		t.Fatal("empty drift")
	}
	var s soakResults
	s.add(serverSample{proc: procSample{RSSKB: 1000, FDs: 10}, goroutines: -1}, 0)
	s.add(serverSample{proc: procSample{RSSKB: 1100, FDs: 10}, goroutines: -1}, 10)
	if s.Samples != 2 || s.RSSKB.DriftPct != 10 || s.Goroutines != nil || s.FDs.DriftPct != 0 {
		t.Fatalf("%+v", s)
	}
}

func fanoutResult(label string, perSec float64) result {
	return result{
		Scenario: scFanout, Label: label, Params: map[string]any{"transport": "ws"},
		Results: results{
			Connections: &connResults{Connected: 1000},
			Publish:     &publishResults{PerSec: 100, LatencyMS: latencySummary{P50: 0.5, P99: 2}},
			Delivery:    &deliveryResults{PerSec: perSec, Lost: 1, LatencyMS: latencySummary{P50: 1, P90: 2, P99: 3, Max: 4}},
		},
		Server: &serverReport{CPUPct: 150, RSSAfterKB: 102400},
	}
}

func TestTable(t *testing.T) {
	rs := []result{
		fanoutResult("fanout-1000", 300),
		fanoutResult("fanout-1000", 100),
		fanoutResult("fanout-1000", 200),
		{Scenario: scIdle, Params: map[string]any{"transport": "lp"}, Results: results{
			Connections: &connResults{Connected: 2000, PerSec: 5000, LatencyMS: latencySummary{P50: 1}},
			Idle:        &idleResults{RSSPerConnBytes: 3456.7},
		}},
		{Scenario: scChurn, Params: map[string]any{"transport": "ws"}, Results: results{Churn: &churnResults{PerSec: 2500}}},
	}
	var b bytes.Buffer
	writeTable(&b, rs, true)
	out := b.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 { // header, separator, 3 rows
		t.Fatalf("table:\n%s", out)
	}
	for _, want := range []string{"fanout-1000 (median of 3)", "200 deliv/s (100 ins/s)", "5000 conn/s", "3457", "2500 ops/s", "| 100.0 |", "0.50 / 2.00"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	writeTable(&b, rs, false)
	if n := len(strings.Split(strings.TrimSpace(b.String()), "\n")); n != 7 {
		t.Fatalf("unmerged table has %d lines", n)
	}
}

func TestReadResults(t *testing.T) {
	r := fanoutResult("x", 1)
	r.Timestamp = time.Now().UTC().Format(time.RFC3339)
	line, _ := json.Marshal(r)
	in := "noise\n" + string(line) + "\n{\"not\":\"a result\"}\n{broken\n"
	rs, err := readResults(strings.NewReader(in))
	if err != nil || len(rs) != 1 || rs[0].Label != "x" || rs[0].Results.Delivery.Lost != 1 {
		t.Fatalf("%v %+v", err, rs)
	}
}

func TestParseOptionsDefaults(t *testing.T) {
	cases := []struct {
		args              []string
		subs, pipes, pubs int
		rate              float64
		duration, settle  time.Duration
		scenario          string
		soak              bool
	}{
		{[]string{"idle"}, 2000, 100, 0, 0, 10 * time.Second, 5 * time.Second, scIdle, false},
		{[]string{"fanout"}, 1000, 1, 4, 0, 10 * time.Second, time.Second, scFanout, false},
		{[]string{"publish"}, 32, 32, 32, 0, 10 * time.Second, time.Second, scPublish, false},
		{[]string{"publish", "--pipes", "8", "--subs", "16"}, 16, 8, 32, 0, 10 * time.Second, time.Second, scPublish, false},
		{[]string{"manypipes"}, 1000, 1000, 8, 0, 10 * time.Second, time.Second, scManyPipes, false},
		{[]string{"history"}, 8, 8, 8, 0, 10 * time.Second, time.Second, scHistory, false},
		{[]string{"soak"}, 1000, 1, 4, 1000, 10 * time.Minute, time.Second, scFanout, true},
		{[]string{"fanout", "--soak", "--rate", "50", "--duration", "1m"}, 1000, 1, 4, 50, time.Minute, time.Second, scFanout, true},
	}
	for _, c := range cases {
		o, err := parseOptions(c.args, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if o.Subs != c.subs || o.Pipes != c.pipes || o.Publishers != c.pubs || o.Rate != c.rate ||
			o.Duration != c.duration || o.Settle != c.settle || o.Scenario != c.scenario || o.Soak != c.soak {
			t.Errorf("%v: got subs %d pipes %d pubs %d rate %v duration %v settle %v scenario %s soak %v",
				c.args, o.Subs, o.Pipes, o.Publishers, o.Rate, o.Duration, o.Settle, o.Scenario, o.Soak)
		}
		if !strings.HasPrefix(o.Prefix, "bench_") || o.MetricsURL != "http://127.0.0.1:8087/metrics" {
			t.Errorf("%v: prefix %q metrics %q", c.args, o.Prefix, o.MetricsURL)
		}
	}
	for _, bad := range [][]string{{"nosuch"}, {"fanout", "--transport", "tcp"}, {"fanout", "--sql", "x"}, {"history", "--history-length", "5000"}, {"fanout", "--prefix", "a b"}, {"fanout", "extra"}} {
		if _, err := parseOptions(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestAppendQuoted(t *testing.T) {
	got := quoteSQL("it's a \\ \"x\"\n\x00")
	if got != `'it\'s a \\ "x"\n\0'` {
		t.Fatalf("%s", got)
	}
}
