package pipes

import (
	"errors"
	"strings"
	"testing"
)

func TestValidPipeName(t *testing.T) {
	cases := map[string]bool{
		"ab": true, "a": false, "": false, "web_chat-1": true, strings.Repeat("a", 64): true,
		strings.Repeat("a", 65): false, "a.b": false, "a b": false, "пайп": false, "a'b": false, "a;b": false, "a\x00b": false,
	}
	for in, want := range cases {
		if got := ValidPipeName(in); got != want {
			t.Errorf("ValidPipeName(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestValidEventAndMarker(t *testing.T) {
	if !ValidEventName("") || !ValidEventName("ev_1-x") || ValidEventName("a.b") || ValidEventName(strings.Repeat("e", 65)) {
		t.Error("ValidEventName")
	}
	if ValidMarker("") || !ValidMarker("m.1_a-b") || ValidMarker("m m") || ValidMarker(strings.Repeat("m", 65)) {
		t.Error("ValidMarker")
	}
}

func TestValidUserID(t *testing.T) {
	for id, want := range map[int64]bool{0: false, -1: false, 1: true, MaxUserID: true, MaxUserID + 1: false} {
		if got := ValidUserID(id); got != want {
			t.Errorf("ValidUserID(%d) = %v", id, got)
		}
	}
}

func TestValidateMessage(t *testing.T) {
	cases := []struct {
		data string
		max  int
		want error
	}{
		{"hello", 10, nil},
		{"hello", 4, ErrMessageTooLarge},
		{"bad\xff", 10, ErrInvalidMessage},
		{strings.Repeat("x", DefaultMaxMsg), 0, nil},
		{strings.Repeat("x", DefaultMaxMsg+1), 0, ErrMessageTooLarge},
	}
	for _, c := range cases {
		if err := ValidateMessage(c.data, c.max); !errors.Is(err, c.want) && !(err == nil && c.want == nil) {
			t.Errorf("ValidateMessage(len %d, %d) = %v, want %v", len(c.data), c.max, err, c.want)
		}
	}
}

func TestPermissions(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"subscribe plain", CanSubscribe("news", false), nil},
		{"subscribe private anon", CanSubscribe("private_x", false), ErrForbidden},
		{"subscribe private auth", CanSubscribe("private_x", true), nil},
		{"subscribe sys", CanSubscribe("sys", true), ErrForbidden},
		{"subscribe _answer", CanSubscribe("_answer_to_x", true), ErrForbidden},
		{"subscribe invalid", CanSubscribe("a.b", true), ErrInvalidPipe},
		{"publish web", CanWebPublish("web_x", false), nil},
		{"publish webauth anon", CanWebPublish("webauth_x", false), ErrForbidden},
		{"publish webauth auth", CanWebPublish("webauth_x", true), nil},
		{"publish other", CanWebPublish("news", true), ErrForbidden},
		{"publish track", CanWebPublish("track_x", true), ErrForbidden},
		{"count web", CanCount("web_x"), nil},
		{"count track", CanCount("track_x"), nil},
		{"count other", CanCount("news"), ErrForbidden},
	}
	for _, c := range cases {
		if c.want == nil && c.err != nil || c.want != nil && !errors.Is(c.err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, c.err, c.want)
		}
	}
}
