package main

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPoolPlumbing(t *testing.T) {
	specs := []workerSpec{{Role: roleChurn, Transport: "ws", HTTPAddr: "127.0.0.1:1"}, {Role: roleChurn, Transport: "ws", HTTPAddr: "127.0.0.1:1"}}
	p, err := startPool(specs)
	if err != nil {
		t.Fatal(err)
	}
	defer p.kill()
	if _, err := p.await("ready", 0, 30*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	evs, err := p.request(command{Op: "mark", Reset: true}, "mark", 30*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range evs {
		if e.Worker != i || e.Mark == nil || e.Mark.At == 0 {
			t.Fatalf("mark %d: %+v", i, e)
		}
	}
	evs, err = p.request(command{Op: "report"}, "report", 30*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep := mergeReports(evs)
	if rep.RSSKB <= 0 || rep.Connected != 0 {
		t.Fatalf("report %+v", rep)
	}
	// Unknown commands are logged and ignored; the worker stays.
	if err := p.broadcast(command{Op: "bogus"}); err != nil {
		t.Fatal(err)
	}
	p.close(30 * time.Second)
	for _, pr := range p.procs {
		if pr.cmd.ProcessState == nil || !pr.cmd.ProcessState.Success() {
			t.Fatalf("worker %d: %v", pr.i, pr.cmd.ProcessState)
		}
	}
}

func TestWorkerExitsWhenParentGoes(t *testing.T) {
	p, err := startPool([]workerSpec{{Role: roleChurn, Transport: "lp", HTTPAddr: "127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.kill()
	if _, err := p.await("ready", 0, 30*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	p.procs[0].stdin.Close() // as if the parent died
	select {
	case e := <-p.events:
		if e.Ev != "exit" || e.Msg != "<nil>" {
			t.Fatalf("event %+v", e)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not exit on stdin EOF")
	}
}

func TestWorkerWantsInit(t *testing.T) {
	var out bytes.Buffer
	if code := workerMain(strings.NewReader(`{"op":"mark"}`+"\n"), &out); code != 2 {
		t.Fatalf("exit %d", code)
	}
	var e event
	if err := json.Unmarshal(out.Bytes(), &e); err != nil || e.Ev != "error" {
		t.Fatalf("%v %s", err, out.String())
	}
}

func TestWorkerInProcess(t *testing.T) {
	// The whole command loop without a process boundary.
	f := newFakeServer(t)
	spec := workerSpec{Role: roleSubs, Transport: "ws", HTTPAddr: f.addr(), Count: 3, Pipes: 1, PipePrefix: "p_"}
	in := strings.Join([]string{
		mustJSON(command{Op: "init", Spec: &spec}),
	}, "\n") + "\n"
	r, w := io.Pipe()
	go func() {
		w.Write([]byte(in))
		// wait until all three are subscribed, then publish and ask
		deadline := time.Now().Add(10 * time.Second)
		for f.users("p_") < 3 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		for s := uint64(1); s <= 5; s++ {
			f.publish("p_0", "e", string(encodePayload(nil, time.Now().UnixNano(), s, 0, 80)))
		}
		time.Sleep(200 * time.Millisecond)
		w.Write([]byte(mustJSON(command{Op: "expect", OKPerPipe: []uint64{5}}) + "\n"))
		w.Write([]byte(mustJSON(command{Op: "report", ID: 1}) + "\n"))
		w.Write([]byte(mustJSON(command{Op: "close", ID: 2}) + "\n"))
	}()
	var out bytes.Buffer
	if code := workerMain(r, &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	var rep *workerReport
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var e event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if e.Ev == "report" {
			rep = e.Report
		}
	}
	if rep == nil || rep.Connected != 3 || rep.Expected != 15 || rep.Unique != 15 || rep.Lost != 0 || rep.Latency.count() != 15 {
		t.Fatalf("report %+v\n%s", rep, out.String())
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestPoolCloseAfterWorkerDied(t *testing.T) {
	specs := []workerSpec{{Role: roleChurn, Transport: "ws", HTTPAddr: "127.0.0.1:1"}, {Role: roleChurn, Transport: "ws", HTTPAddr: "127.0.0.1:1"}}
	p, err := startPool(specs)
	if err != nil {
		t.Fatal(err)
	}
	defer p.kill()
	if _, err := p.await("ready", 0, 30*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	p.procs[0].cmd.Process.Kill()
	<-p.procs[0].done
	// A request now fails instead of hanging.
	if _, err := p.request(command{Op: "mark"}, "mark", 30*time.Second, nil); err == nil {
		t.Fatal("request to a dead worker succeeded")
	}
	start := time.Now()
	p.close(30 * time.Second)
	if time.Since(start) > 10*time.Second {
		t.Fatal("close waited for the dead worker")
	}
	select {
	case <-p.procs[1].done:
	default:
		t.Fatal("live worker still running")
	}
}
