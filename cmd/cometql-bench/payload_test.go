package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestEncodePayloadSize(t *testing.T) {
	for _, size := range []int{0, 10, 40, 50, 100, 1000, 65536} {
		b := encodePayload(nil, 1700000000123456789, 42, 7, size)
		if size >= 60 && len(b) != size {
			t.Errorf("size %d: got %d bytes", size, len(b))
		}
		var p struct {
			T int64  `json:"t"`
			S uint64 `json:"s"`
			W int    `json:"w"`
			P string `json:"p"`
		}
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("size %d: not JSON: %v: %s", size, err, b)
		}
		if p.T != 1700000000123456789 || p.S != 42 || p.W != 7 {
			t.Fatalf("size %d: decoded %+v", size, p)
		}
		got, ok := decodePayload(b)
		if !ok || got != (payload{T: 1700000000123456789, S: 42, W: 7}) {
			t.Fatalf("decodePayload: %+v %v", got, ok)
		}
	}
	// Appends to dst.
	b := encodePayload([]byte("xx"), 1, 1, 0, 0)
	if !strings.HasPrefix(string(b), `xx{"t":1,`) {
		t.Fatalf("%s", b)
	}
}

// serverFrame encodes a pipe message the way the server does: message text
// in a JSON string, apostrophes as \u0027.
func serverFrame(msg string) []byte {
	b, _ := json.Marshal(map[string]any{
		"data": msg, "event": "bench", "message_send_time": 1, "pipe": "p1", "user_id": 0, "id": "m1", "seq": 3,
	})
	return []byte(strings.ReplaceAll(string(b), "'", `\u0027`))
}

func TestClassifyFrame(t *testing.T) {
	msg := string(encodePayload(nil, 123456, 9, 2, 100))
	want := payload{T: 123456, S: 9, W: 2}
	cases := []struct {
		name  string
		frame string
		kind  frameKind
		p     payload
	}{
		{"server message", string(serverFrame(msg)), frameMessage, want},
		{"data not first", `{"event":"bench","pipe":"p","data":` + jsonStr(msg) + `}`, frameMessage, want},
		{"unicode-escaped quotes (slow path)", `{"data":"{\u0022t\u0022:123456,\u0022s\u0022:9,\u0022w\u0022:2,\u0022p\u0022:\u0022x\u0022}","event":"e","pipe":"p"}`, frameMessage, want},
		{"reordered keys (slow path)", `{"data":"{\"s\":9,\"w\":2,\"t\":123456}","pipe":"p"}`, frameMessage, want},
		{"serverInfo", `{"authorized":false,"data":"","event":"serverInfo","message_send_time":1,"pipe":"sys","server":"cometql 1"}`, frameInfo, payload{}},
		{"error", `{"data":{"error":"bad","code":"418"},"event":"error","message_send_time":1,"pipe":"sys"}`, frameError, payload{}},
		{"presence", `{"data":"online","event":"online","pipe":"user_status_1","message_send_time":1}`, frameOther, payload{}},
		{"object data", `{"data":{"user_id":1,"uuid":"u"},"event":"subscription","pipe":"track_x"}`, frameOther, payload{}},
		{"foreign JSON data", `{"data":"{\"a\":1}","event":"e","pipe":"p"}`, frameBad, payload{}},
		{"not JSON", `hello`, frameBad, payload{}},
		{"apostrophe", string(serverFrame(`{"t":5,"s":1,"w":0,"p":"it's"}`)), frameMessage, payload{T: 5, S: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := classifyFrame([]byte(c.frame))
			if r.kind != c.kind || r.p != c.p {
				t.Fatalf("got kind %d %+v, want %d %+v", r.kind, r.p, c.kind, c.p)
			}
		})
	}
}

func jsonStr(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestEachObject(t *testing.T) {
	a := serverFrame(string(encodePayload(nil, 1, 1, 0, 50)))
	b := serverFrame(string(encodePayload(nil, 2, 2, 0, 50)))
	cases := []struct {
		frame string
		n     int
	}{
		{string(a), 1},
		{string(a) + "\n" + string(b), 2},
		{string(a) + "\n" + string(b) + "\n", 2},
		{"\n\n" + string(a) + "\r\n\n" + string(b), 2},
		{"", 0},
		// A newline inside a message is escaped in JSON, so it never splits.
		{string(serverFrame("line1\nline2")), 1},
	}
	for i, c := range cases {
		var got [][]byte
		eachObject([]byte(c.frame), func(obj []byte) { got = append(got, obj) })
		if len(got) != c.n {
			t.Fatalf("case %d: %d objects, want %d", i, len(got), c.n)
		}
		for _, o := range got {
			if !json.Valid(o) {
				t.Fatalf("case %d: piece is not JSON: %q", i, o)
			}
		}
	}
}

func TestScanUintOverflow(t *testing.T) {
	if _, n := scanUint([]byte("99999999999999999999999")); n != 0 {
		t.Fatal("overflow accepted")
	}
	if v, n := scanUint([]byte("123abc")); v != 123 || n != 3 {
		t.Fatalf("got %d %d", v, n)
	}
}

func FuzzClassifyFrame(f *testing.F) {
	f.Add(serverFrame(string(encodePayload(nil, 1, 1, 0, 100))))
	f.Add([]byte(`{"data":"{\"t\":1,\"s\":`))
	f.Add([]byte(`{"event":"serverInfo"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := classifyFrame(b)
		if r.kind == frameMessage && r.p.S == 0 {
			t.Fatalf("message with seq 0 from %q", b)
		}
	})
}

func TestParsePoll(t *testing.T) {
	a := string(serverFrame(string(encodePayload(nil, 1, 1, 0, 60))))
	cases := []struct {
		in     string
		next   int64
		frames []string
		bad    bool
	}{
		{`{"sid":"abc","next":0,"frames":[]}`, 0, nil, false},
		{`{"sid":"abc","next":3,"frames":[` + a + `,{"x":"]}"},{"y":[1,{"z":"\"}"}]}]}`, 3, []string{a, `{"x":"]}"}`, `{"y":[1,{"z":"\"}"}]}`}, false},
		{` { "frames" : [ {"a":1} ] , "next" : 7 , "sid" : "s" } `, 7, []string{`{"a":1}`}, false},
		{`{"next":2,"frames":null,"extra":{"k":[true,false,null]}}`, 2, nil, false},
		{`{"sid":"abc","frames":[]}`, 0, nil, true},
		{`{"next":1,"frames":[{"a":1}`, 0, nil, true},
		{`{"next":x}`, 0, nil, true},
		{`[]`, 0, nil, true},
		{`{"error":"unknown session","code":404}`, 0, nil, true},
	}
	for i, c := range cases {
		var got []string
		next, err := parsePoll([]byte(c.in), func(f []byte) { got = append(got, string(f)) })
		if (err != nil) != c.bad {
			t.Fatalf("case %d: err %v", i, err)
		}
		if c.bad {
			continue
		}
		if next != c.next || strings.Join(got, "|") != strings.Join(c.frames, "|") {
			t.Fatalf("case %d: next %d frames %q", i, next, got)
		}
	}
}
