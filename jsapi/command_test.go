package jsapi

import (
	"reflect"
	"strings"
	"testing"
)

func TestDecodeCommand(t *testing.T) {
	cases := []struct {
		in   string
		want command
		code string
	}{
		{in: "subscription\nweb_a\ntrack_b\n", want: command{kind: cmdSubscription, names: []string{"web_a", "track_b", ""}}},
		{in: "subscription", want: command{kind: cmdSubscription}},
		{in: "subscription\r\nweb_a\r\n", want: command{kind: cmdSubscription, names: []string{"web_a", ""}}},
		{in: "web_pipe2\nweb_chat\nmsg\n*\n{\"text\":\"a\nb\"}\n", want: command{kind: cmdWebPipe, pipe: "web_chat", event: "msg", data: "{\"text\":\"a\nb\"}\n"}},
		{in: "web_pipe2\n@web_chat\nev\n*\n", want: command{kind: cmdWebPipe, pipe: "@web_chat", event: "ev", data: ""}},
		{in: "web_pipe2\nweb_chat\nev\n*", code: "bad_command"},
		{in: "pipe_log\nnews\nm.1\n", want: command{kind: cmdPipeLog, pipe: "news", marker: "m.1"}},
		{in: "pipe_log\nnews\nm.1\n42", want: command{kind: cmdPipeLog, pipe: "news", marker: "m.1", since: 42}},
		{in: "pipe_log\nnews\nm\nxyz", code: "bad_command"},
		{in: "pipe_log\n", code: "bad_command"},
		{in: "pipe_count\nweb_a\nmk\n", want: command{kind: cmdPipeCount, pipe: "web_a", marker: "mk"}},
		{in: "track_pipe_users\ntrack_a\nmk", want: command{kind: cmdTrackPipeUsers, pipe: "track_a", marker: "mk"}},
		{in: "user_data\nmk\n12", want: command{kind: cmdUserData, marker: "mk", user: 12}},
		{in: "user_data\nmk\nabc", code: "invalid_user"},
		{in: "user_status\n5", want: command{kind: cmdUserStatus, user: 5}},
		{in: "user_status\n0", code: "invalid_user"},
		{in: "statistics\n{\"url\":\"x\"}", want: command{kind: cmdStatistics}},
		{in: "hello\nworld", code: "unknown_command"},
		{in: "", code: "unknown_command"},
		{in: "subscription\nweb_\xff", code: "invalid_message"},
	}
	for _, c := range cases {
		got, err := decodeCommand(c.in)
		if c.code != "" {
			if err == nil || err.code != c.code {
				t.Errorf("%q: got %+v, %v; want error %s", c.in, got, err, c.code)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q:\n got %+v\nwant %+v", c.in, got, c.want)
		}
	}
}

// FuzzDecodeCommand: any frame decodes or is refused with a code, never a
// panic; web_pipe2 keeps the whole rest of the frame as the message.
func FuzzDecodeCommand(f *testing.F) {
	for _, s := range []string{
		"subscription\nweb_a\ntrack_b",
		"web_pipe2\nweb_chat\nmsg\n*\n{\"a\":\"b\\nc\"}",
		"web_pipe2\n@web_x\n\n*\n",
		"pipe_log\nnews\nmarker.1\n17",
		"pipe_count\nweb_a\nm\n",
		"track_pipe_users\ntrack_a\nm",
		"user_data\nm\n12",
		"user_status\n12",
		"statistics\n{}",
		"nonsense",
		"\n\n\n",
		"user_status\n-1",
		"pipe_log\nx\ny\n99999999999999999999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		c, err := decodeCommand(text)
		if err != nil {
			if err.code == "" || err.text == "" {
				t.Fatalf("error without code or text: %+v", err)
			}
			return
		}
		switch c.kind {
		case cmdWebPipe:
			if !strings.HasSuffix(text, c.data) {
				t.Fatalf("message %q is not the rest of %q", c.data, text)
			}
		case cmdUserData, cmdUserStatus:
			if c.user < 1 {
				t.Fatalf("user %d", c.user)
			}
		case cmdPipeLog:
			if c.since < 0 || c.pipe == "" {
				t.Fatalf("pipe_log %+v", c)
			}
		case cmdSubscription, cmdPipeCount, cmdTrackPipeUsers, cmdStatistics:
		default:
			t.Fatalf("kind %d", c.kind)
		}
	})
}
