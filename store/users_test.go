package store

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/cometql/cometql/auth"
	"github.com/cometql/cometql/pipes"
)

func TestUserTimes(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})
	for _, r := range []struct{ dev, user, t int64 }{
		{0, 1, 100}, {0, 2, 0}, {0, 3, 300}, {0, 1, 150}, {3, 1, 0}, {3, 2, 999},
	} {
		if err := s.SetUserTime(ctx, r.dev, r.user, r.t); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		dev  int64
		ids  []int64
		want map[int64]int64
	}{
		{"all", 0, nil, map[int64]int64{1: 150, 2: 0, 3: 300}},
		{"one", 0, []int64{3}, map[int64]int64{3: 300}},
		{"some, with unknown", 0, []int64{1, 2, 42}, map[int64]int64{1: 150, 2: 0}},
		{"empty list", 0, []int64{}, map[int64]int64{}},
		{"other tenant", 3, nil, map[int64]int64{1: 0, 2: 999}},
		{"unknown tenant", 5, nil, map[int64]int64{}},
	}
	check := func() {
		t.Helper()
		for _, tt := range tests {
			got, err := s.UserTimes(ctx, tt.dev, tt.ids)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s: UserTimes = %v, want %v", tt.name, got, tt.want)
			}
		}
	}
	check()
	if err := s.ResetOnline(ctx, 5000); err != nil {
		t.Fatal(err)
	}
	tests[0].want[2] = 5000
	tests[2].want[2] = 5000
	tests[4].want[1] = 5000
	check()
}

func TestAuthRows(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})

	// users_auth
	for _, r := range []struct {
		dev, user int64
		hash      string
	}{{0, 1, "a"}, {0, 2, "b"}, {0, 1, "a2"}, {3, 1, "dev3"}} {
		if err := s.SetHash(ctx, r.dev, r.user, r.hash); err != nil {
			t.Fatal(err)
		}
	}
	hashTests := []struct {
		dev  int64
		ids  []int64
		want map[int64]string
	}{
		{0, nil, map[int64]string{1: "a2", 2: "b"}},
		{0, []int64{1}, map[int64]string{1: "a2"}},
		{0, []int64{2, 1, 9}, map[int64]string{1: "a2", 2: "b"}},
		{0, []int64{}, map[int64]string{}},
		{3, nil, map[int64]string{1: "dev3"}},
		{3, []int64{2}, map[int64]string{}},
	}
	for _, tt := range hashTests {
		got, err := s.Hashes(ctx, tt.dev, tt.ids)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Hashes(%d, %v) = %v, %v; want %v", tt.dev, tt.ids, got, err, tt.want)
		}
	}
	if n, err := s.DeleteHash(ctx, 0, 1); err != nil || n != 1 {
		t.Errorf("DeleteHash = %d, %v", n, err)
	}
	if n, err := s.DeleteHash(ctx, 0, 1); err != nil || n != 0 {
		t.Errorf("second DeleteHash = %d, %v", n, err)
	}
	if got, _ := s.Hashes(ctx, 3, nil); got[1] != "dev3" {
		t.Errorf("dev 3 hash after dev 0 delete: %v", got)
	}

	// users_data
	if err := s.SetUserData(ctx, 0, 1, "one"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserData(ctx, 0, 1, "uno"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserData(ctx, 3, 1, "dev3"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.UserData(ctx, 0, nil); err != nil || !reflect.DeepEqual(got, map[int64]string{1: "uno"}) {
		t.Errorf("UserData = %v, %v", got, err)
	}
	if got, err := s.UserData(ctx, 0, []int64{1, 2}); err != nil || !reflect.DeepEqual(got, map[int64]string{1: "uno"}) {
		t.Errorf("UserData(1,2) = %v, %v", got, err)
	}
	if n, err := s.DeleteUserData(ctx, 0, 1); err != nil || n != 1 {
		t.Errorf("DeleteUserData = %d, %v", n, err)
	}
	if got, err := s.UserData(ctx, 0, []int64{1}); err != nil || len(got) != 0 {
		t.Errorf("UserData after delete = %v, %v", got, err)
	}
	if got, _ := s.UserData(ctx, 3, []int64{1}); got[1] != "dev3" {
		t.Errorf("dev 3 data after dev 0 delete: %v", got)
	}

	// revoked_tokens
	for _, r := range []struct {
		dev   int64
		token string
		t     int64
	}{{0, "t1", 10}, {0, "t2", 20}, {3, "t1", 30}, {0, "t1", 40}} {
		if err := s.RevokeToken(ctx, r.dev, r.token, r.t); err != nil {
			t.Fatal(err)
		}
	}
	tokTests := []struct {
		dev    int64
		tokens []string
		want   []auth.RevokedToken
	}{
		{0, nil, []auth.RevokedToken{{Token: "t2", Time: 20}, {Token: "t1", Time: 40}}},
		{0, []string{"t1"}, []auth.RevokedToken{{Token: "t1", Time: 40}}},
		{0, []string{"t1", "nope", "t2"}, []auth.RevokedToken{{Token: "t2", Time: 20}, {Token: "t1", Time: 40}}},
		{0, []string{"nope"}, nil},
		{0, []string{}, nil},
		{3, nil, []auth.RevokedToken{{Token: "t1", Time: 30}}},
	}
	for _, tt := range tokTests {
		got, err := s.RevokedTokens(ctx, tt.dev, tt.tokens)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("RevokedTokens(%d, %q) = %v, %v; want %v", tt.dev, tt.tokens, got, err, tt.want)
		}
	}
	if n, err := s.UnrevokeToken(ctx, 0, "t1"); err != nil || n != 1 {
		t.Errorf("UnrevokeToken = %d, %v", n, err)
	}
	if n, err := s.UnrevokeToken(ctx, 0, "t1"); err != nil || n != 0 {
		t.Errorf("second UnrevokeToken = %d, %v", n, err)
	}
	if got, _ := s.RevokedTokens(ctx, 3, []string{"t1"}); len(got) != 1 {
		t.Errorf("dev 3 token after dev 0 unrevoke: %v", got)
	}
}

// TestTextRoundTrip checks that text comes back byte for byte from every
// text column.
func TestTextRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})
	texts := []struct{ name, text string }{
		{"empty", ""},
		{"cyrillic and emoji", "Привет 👋"},
		{"apostrophe", "it's"},
		{"quotes", `"double" 'single' ` + "`back`"},
		{"windows path", `C:\path\to\file`},
		{"newlines", "line1\nline2\r\nline3\n"},
		{"json", `{"a":[1,2,{"b":"c\"d"}],"e":null}`},
		{"nul bytes", "before\x00middle\x00after"},
		{"only nul", "\x00"},
		{"sql", "'); DROP TABLE history; --"},
		{"percent and underscore", "100% _x_"},
		{"long", string(make([]byte, 64<<10))},
	}
	for i, tt := range texts {
		t.Run(tt.name, func(t *testing.T) {
			seq := int64(i + 1)
			m := &pipes.Message{DevID: 0, Pipe: "p", Seq: seq, ID: "id" + tt.text + fmt.Sprint(i), Event: tt.text, Data: tt.text, Time: 1}
			if err := s.AppendHistory(ctx, m, 1000); err != nil {
				t.Fatal(err)
			}
			hist, err := s.History(ctx, 0, "p", seq-1)
			if err != nil || len(hist) != 1 {
				t.Fatalf("History = %v, %v", hist, err)
			}
			if hist[0].Data != tt.text || hist[0].Event != tt.text || hist[0].ID != m.ID {
				t.Errorf("history: data %q event %q id %q", hist[0].Data, hist[0].Event, hist[0].ID)
			}
			if n, err := s.DeleteMessage(ctx, 0, m.ID); err != nil || n != 1 {
				t.Errorf("DeleteMessage by that id = %d, %v", n, err)
			}

			user := seq
			if _, err := s.Enqueue(ctx, 0, &pipes.QueuedMessage{UserID: user, Event: tt.text, Data: tt.text}, 10); err != nil {
				t.Fatal(err)
			}
			q, err := s.Queue(ctx, 0, user, 0)
			if err != nil || len(q) != 1 || q[0].Data != tt.text || q[0].Event != tt.text {
				t.Errorf("queue: %+v, %v", q, err)
			}

			if err := s.SetUserData(ctx, 0, user, tt.text); err != nil {
				t.Fatal(err)
			}
			if d, err := s.UserData(ctx, 0, []int64{user}); err != nil || d[user] != tt.text {
				t.Errorf("user data: %q, %v", d[user], err)
			}
			if err := s.SetHash(ctx, 0, user, tt.text); err != nil {
				t.Fatal(err)
			}
			if h, err := s.Hashes(ctx, 0, []int64{user, user + 1000}); err != nil || h[user] != tt.text {
				t.Errorf("hash: %q, %v", h[user], err)
			}
			token := "tok" + tt.text
			if err := s.RevokeToken(ctx, 0, token, 1); err != nil {
				t.Fatal(err)
			}
			for _, list := range [][]string{{token}, {token, "other"}} {
				r, err := s.RevokedTokens(ctx, 0, list)
				if err != nil || len(r) != 1 || r[0].Token != token {
					t.Errorf("revoked tokens %q: %+v, %v", list, r, err)
				}
			}
			if n, err := s.UnrevokeToken(ctx, 0, token); err != nil || n != 1 {
				t.Errorf("UnrevokeToken = %d, %v", n, err)
			}
		})
	}
}
