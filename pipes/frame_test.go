package pipes

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendStringRoundTrip(t *testing.T) {
	cases := []string{
		"", "plain", `it's`, `a\'b`, `C:\path`, "line1\nline2\r\n\ttab", `{"json":[1,2,"x"]}`,
		"Привет 👋", "nul\x00byte", "ctl\x01\x1f", "sep\u2028\u2029", `"quoted"`, "<script>&amp;",
	}
	for _, in := range cases {
		b := appendString(nil, in)
		if strings.Contains(string(b), `\'`) {
			t.Errorf("%q: encoded form contains backslash-apostrophe: %s", in, b)
		}
		if strings.Contains(string(b), "'") {
			t.Errorf("%q: encoded form contains a raw apostrophe: %s", in, b)
		}
		if strings.ContainsRune(string(b), '\u2028') || strings.ContainsRune(string(b), '\u2029') {
			t.Errorf("%q: raw line separator in %s", in, b)
		}
		var out string
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%q: invalid JSON %s: %v", in, b, err)
		}
		if out != in {
			t.Errorf("round trip: got %q, want %q", out, in)
		}
	}
}

func TestAppendStringInvalidUTF8(t *testing.T) {
	b := appendString(nil, "bad\xff\xfeend")
	if !utf8.Valid(b) {
		t.Fatalf("output is not valid UTF-8: %q", b)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out != "bad\uFFFD\uFFFDend" {
		t.Errorf("got %q", out)
	}
}

func TestFrames(t *testing.T) {
	m := &Message{DevID: 0, Pipe: "web_chat", Event: "ev", Data: "it's", UserID: 7, ID: "abc", Seq: 3, Time: 100}
	cases := []struct {
		name  string
		frame []byte
		want  map[string]any
	}{
		{"message", messageFrame(m), map[string]any{
			"data": "it's", "event": "ev", "message_send_time": 100.0, "pipe": "web_chat", "user_id": 7.0, "id": "abc", "uuid": "abc", "seq": 3.0}},
		{"history", historyFrame(m), map[string]any{
			"data": "it's", "event": "ev", "message_send_time": 100.0, "pipe": "web_chat", "user_id": 7.0, "id": "abc", "seq": 3.0, "history": true}},
		{"presence", messageFrame(&Message{Kind: KindPresence, Pipe: "user_status_5", Event: "online", Data: "online", Time: 9, ID: "i9"}), map[string]any{
			"data": "online", "event": "online", "pipe": "user_status_5", "message_send_time": 9.0, "uuid": "i9"}},
		{"track", messageFrame(&Message{Kind: KindTrack, Pipe: "track_x", Event: "subscription", Time: 9, Member: Member{UserID: 4, UUID: "u1"}}), map[string]any{
			"data": map[string]any{"user_id": 4.0, "uuid": "u1"}, "event": "subscription", "pipe": "track_x", "message_send_time": 9.0}},
		{"private", privateFrame("p1", "e", "hi", 5, false), map[string]any{
			"data": "hi", "event": "e", "message_send_time": 5.0, "pipe": "msg", "uuid": "p1"}},
		{"queued", privateFrame("", "e", "hi", 5, true), map[string]any{
			"data": "hi", "event": "e", "message_send_time": 5.0, "pipe": "msg", "fromQueue": true}},
		{"serverInfo", serverInfoFrame(true, "key", 5, "cometql 1"), map[string]any{
			"authorized": true, "data": "key", "event": "serverInfo", "message_send_time": 5.0, "pipe": "sys", "server": "cometql 1"}},
		{"serverInfo anonymous", serverInfoFrame(false, "key", 5, "cometql 1"), map[string]any{
			"authorized": false, "data": "", "event": "serverInfo", "message_send_time": 5.0, "pipe": "sys", "server": "cometql 1"}},
		{"error", ErrorFrame("forbidden", "no", 5), map[string]any{
			"data": map[string]any{"error": "no", "code": "forbidden"}, "event": "error", "message_send_time": 5.0, "pipe": "sys"}},
		{"handshake", HandshakeErrorFrame(418, "Invalid request Not assigned client api version", 5), map[string]any{
			"error": "418",
			"data":  map[string]any{"error": "Error code 418(Invalid request Not assigned client api version)", "error_code": 418.0},
			"event": "error", "message_send_time": 5.0, "pipe": "sys"}},
		{"answer", answerFrame("web_x", "m", 3, 5), map[string]any{
			"data": map[string]any{"message": "m", "number_messages": 3.0, "error": ""}, "event": "answer", "message_send_time": 5.0, "pipe": "_answer_to_web_x"}},
		{"count", pipeCountFrame(2, "mk.1", 5), map[string]any{
			"data": map[string]any{"user_in_pipe": 2.0, "0": "user_in_pipe", "1": 2.0}, "event": "user_in_pipe", "marker": "mk.1",
			"message_send_time": 5.0, "pipe": "_answer_pipe_count"}},
		{"track users", trackUsersFrame([]Member{{UserID: 1, UUID: "a"}, {UserID: 0, UUID: "b"}}, "m", 5), map[string]any{
			"_info": "answer for track_pipe_users", "data": []any{map[string]any{"user_id": 1.0, "uuid": "a"}, map[string]any{"user_id": 0.0, "uuid": "b"}},
			"event": "answer", "marker": "m", "message_send_time": 5.0, "pipe": "_answer"}},
		{"track users empty", trackUsersFrame(nil, "m", 5), map[string]any{
			"_info": "answer for track_pipe_users", "data": []any{}, "event": "answer", "marker": "m", "message_send_time": 5.0, "pipe": "_answer"}},
		{"user data", userDataFrame(3, "d'x", "m", 5), map[string]any{
			"data": map[string]any{"user_data": "d'x", "user_id": 3.0}, "event": "answer", "marker": "m", "message_send_time": 5.0, "pipe": "_answer"}},
		{"user status", userStatusFrame(3, false, 77, 5), map[string]any{
			"data": map[string]any{"online": false, "last_online_time": 77.0}, "event": "user_status_3", "message_send_time": 5.0, "pipe": "_answer_user_status"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if strings.Contains(string(c.frame), `\'`) || strings.Contains(string(c.frame), "jscode") {
				t.Errorf("forbidden content in %s", c.frame)
			}
			var got map[string]any
			if err := json.Unmarshal(c.frame, &got); err != nil {
				t.Fatalf("invalid JSON %s: %v", c.frame, err)
			}
			if !jsonEqual(got, c.want) {
				t.Errorf("got  %v\nwant %v", got, c.want)
			}
		})
	}
}

func TestMessageFrameOmitsSeqWhenNotLogged(t *testing.T) {
	f := string(messageFrame(&Message{Pipe: "p1", Data: "x", ID: "i", Time: 1}))
	if strings.Contains(f, `"seq"`) || strings.Contains(f, "marker") || strings.Contains(f, "history") {
		t.Errorf("unexpected keys in %s", f)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func BenchmarkMessageFrame(b *testing.B) {
	m := &Message{Pipe: "bench_pipe", Event: "ev", Data: strings.Repeat("x", 100), ID: "mhx-1-2", Time: 1700000000}
	b.ReportAllocs()
	for b.Loop() {
		_ = messageFrame(m)
	}
}

func TestNewMessageIDUniqueFixedWidth(t *testing.T) {
	seen := make(map[string]bool, 100000)
	for i := 0; i < 100000; i++ {
		id := NewMessageID()
		if len(id) != 11 || seen[id] {
			t.Fatalf("id %q (len %d, seen %v)", id, len(id), seen[id])
		}
		seen[id] = true
	}
}
