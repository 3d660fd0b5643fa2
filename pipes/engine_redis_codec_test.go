package pipes

import (
	"testing"
)

func TestRedisCodecRoundTrip(t *testing.T) {
	msgs := []Message{
		{Kind: KindPipe, ID: "abc", Time: 17, UserID: 1<<53 - 1, Exclude: "n1/5", Event: "ev", Data: "x|y\n:3:z"},
		{Kind: KindPresence, ID: "i", Time: 1, Event: "online", Data: "online"},
		{Kind: KindTrack, ID: "t", Event: "subscription", Member: Member{Session: "n2/a", UserID: 9, UUID: "u|u"}, Exclude: "n2/a"},
		{Kind: KindPipe},
	}
	for _, m := range msgs {
		var got Message
		if err := decodeChannelMessage("42|"+encodeBody(&m), &got); err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		want := m
		want.Seq = 42
		if want.Kind == KindTrack {
			want.Member = Member{Session: m.Exclude, UserID: m.Member.UserID, UUID: m.Member.UUID}
		}
		if got != want {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	p := &privateMessage{dev: 3, user: 7, t: 9, id: "id", event: "e", data: "a|b"}
	if got, err := decodePrivate(encodePrivate(p)); err != nil || *got != *p {
		t.Fatalf("private = %+v, %v", got, err)
	}
	if dev, user, tok, err := decodeKick(encodeKick(2, 0, "a|b")); err != nil || dev != 2 || user != 0 || tok != "a|b" {
		t.Fatalf("kick = %d %d %q %v", dev, user, tok, err)
	}
	if q, err := decodeQueued("5|100|ev|d|x", 7); err != nil || q.Index != 5 || q.Time != 100 || q.Event != "ev" || q.Data != "d|x" || q.UserID != 7 {
		t.Fatalf("queued = %+v, %v", q, err)
	}
	mem := Member{Session: "n/1", UserID: 4, UUID: "u", UserAgent: "ua", IP: "ip", Origin: "o", Language: "l"}
	if got, err := decodeMember(encodeMember(mem)); err != nil || got != mem {
		t.Fatalf("member = %+v, %v", got, err)
	}
}

// FuzzRedisDecode: whatever Redis hands back, decoding fails cleanly.
func FuzzRedisDecode(f *testing.F) {
	m := Message{Kind: KindPipe, ID: "abc", Time: 17, UserID: 3, Exclude: "n1/5", Event: "ev", Data: "d"}
	f.Add("0|" + encodeBody(&m))
	f.Add(encodePrivate(&privateMessage{dev: 1, user: 2, t: 3, id: "i", event: "e", data: "d"}))
	f.Add("1|a|2|3|4:abcd99:x")
	f.Fuzz(func(t *testing.T, s string) {
		var m Message
		_ = decodeChannelMessage(s, &m)
		_, _ = decodePrivate(s)
		_, _ = decodeQueued(s, 1)
		_, _, _, _ = decodeKick(s)
		_, _ = decodeMember(s)
	})
}
