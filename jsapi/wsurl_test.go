package jsapi

import (
	"strings"
	"testing"
)

func TestParseWSURL(t *testing.T) {
	cases := []struct {
		name          string
		params, query string
		want          connParams
		code          int
	}{
		{name: "original order",
			params: "/sesion=abc+/=&myid=15&devid=3&v=4.08&uuid=Abc_-123&api=js",
			want:   connParams{Key: "abc+/=", UserID: 15, DevID: 3, Version: "4.08", UUID: "Abc_-123", API: "js"}},
		{name: "any order",
			params: "/api=js&uuid=u1&v=3.32&devid=0&myid=2&sesion=k",
			want:   connParams{Key: "k", UserID: 2, Version: "3.32", UUID: "u1", API: "js"}},
		{name: "query string",
			query: "sesion=a%2Bb&myid=7&devid=1&v=5&uuid=zz",
			want:  connParams{Key: "a+b", UserID: 7, DevID: 1, Version: "5", UUID: "zz"}},
		{name: "path wins over query",
			params: "/sesion=p&v=1.0&uuid=x", query: "sesion=q&myid=9",
			want: connParams{Key: "p", UserID: 9, Version: "1.0", UUID: "x"}},
		{name: "percent-encoded path value",
			params: "/sesion=a%20b&v=1.0&uuid=x",
			want:   connParams{Key: "a b", Version: "1.0", UUID: "x"}},
		{name: "anonymous: empty key, non-numeric myid",
			params: "/sesion=&myid=abc&devid=x&v=4.08&uuid=x",
			want:   connParams{Version: "4.08", UUID: "x"}},
		{name: "anonymous: user id out of range",
			params: "/sesion=k&myid=9007199254740992&v=4.08&uuid=x",
			want:   connParams{Key: "k", Version: "4.08", UUID: "x"}},
		{name: "uuid sanitized and truncated",
			params: "/sesion=k&v=1.0&uuid=" + "ab<c>d" + strings.Repeat("z", 40),
			want:   connParams{Key: "k", Version: "1.0", UUID: "abcd" + strings.Repeat("z", 28)}},
		{name: "no session part", params: "/myid=1&v=4.08", code: 401},
		{name: "empty", code: 401},
		{name: "no version", params: "/sesion=k&myid=1", code: 418},
		{name: "bad version", params: "/sesion=k&v=4.x", code: 418},
		{name: "version ending with a dot", params: "/sesion=k&v=4.", code: 418},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, herr := parseWSURL(c.params, c.query)
			if c.code != 0 {
				if herr == nil || herr.code != c.code {
					t.Fatalf("got %+v, %v; want code %d", got, herr, c.code)
				}
				return
			}
			if herr != nil {
				t.Fatalf("error %v", herr)
			}
			if got != c.want {
				t.Fatalf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestParseWSURLGeneratesUUID(t *testing.T) {
	a, herr := parseWSURL("/sesion=&v=4.08", "")
	if herr != nil {
		t.Fatal(herr)
	}
	b, _ := parseWSURL("/sesion=&v=4.08&uuid=%%%", "")
	if len(a.UUID) != 32 || len(b.UUID) != 32 || a.UUID == b.UUID || sanitizeUUID(a.UUID) != a.UUID {
		t.Fatalf("generated uuids %q %q", a.UUID, b.UUID)
	}
}

// FuzzParseWSURL: any path and query parse without panicking, and what
// parses obeys the rules of SPEC 3.1.
func FuzzParseWSURL(f *testing.F) {
	f.Add("/sesion=abc&myid=15&devid=3&v=4.08&uuid=Abc_-123&api=js", "")
	f.Add("", "sesion=a%2Bb&myid=7&devid=1&v=5&uuid=zz")
	f.Add("/sesion=&myid=&devid=&v=&uuid=&api=", "")
	f.Add("/sesion=%zz&v=1.2.3.4&uuid=\xff\xfe", "sesion=&v=%")
	f.Add("//&&&==&sesion&v=1", "v=2&&sesion==")
	f.Fuzz(func(t *testing.T, params, query string) {
		p, herr := parseWSURL(params, query)
		if herr != nil {
			if herr.code != codeNoSession && herr.code != codeBadVersion {
				t.Fatalf("code %d", herr.code)
			}
			return
		}
		if !validVersion(p.Version) {
			t.Fatalf("version %q accepted", p.Version)
		}
		if len(p.UUID) == 0 || len(p.UUID) > maxUUID || sanitizeUUID(p.UUID) != p.UUID {
			t.Fatalf("uuid %q", p.UUID)
		}
		if p.UserID < 0 || p.UserID > 1<<53-1 || p.DevID < 0 {
			t.Fatalf("ids %d %d", p.UserID, p.DevID)
		}
		if len(p.Key) > maxKeyBytes || len(p.API) > maxAPI {
			t.Fatalf("key %d bytes, api %d bytes", len(p.Key), len(p.API))
		}
	})
}
