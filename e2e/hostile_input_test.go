package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// inToken signs an HS256 JWT for user in tenant dev with the server's
// password (SPEC 3.2: the tenant's password followed by its id).
func inToken(t testing.TB, dev, user int64, exp time.Time) string {
	t.Helper()
	return inTokenWith(t, testPassword, dev, user, exp)
}

// inTokenWith signs with another password (a tenant's own).
func inTokenWith(t testing.TB, password string, dev, user int64, exp time.Time) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"user_id": user, "exp": exp.Unix()}).
		SignedString([]byte(fmt.Sprintf("%s%d", password, dev)))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestHostileText: invalid UTF-8 in every text field, names with quotes,
// semicolons and NUL, user ids outside the safe range, and SQL that tries
// to smuggle a second statement. CometQL answers each with its error
// (1366 invalid value, 1406 too long, 1064 syntax) and goes on; browsers
// get sys error frames (or are anonymous, for URL parameters); nothing
// is stored, nothing crashes, a healthy client keeps working and no
// goroutine or memory is left behind.
func TestHostileText(t *testing.T) {
	s := startServer(t, "", "--pprof")
	canary := newCanary(t, s)
	leaks := inLeakBaseline(t, s)
	db := s.db(t)
	const bad = "ok\xff\xfe\xc3("
	// Each case, then the canary.
	run := func(name string, f func(t *testing.T)) {
		t.Run(name, f)
		canary.check()
	}

	run("SQL text fields, invalid UTF-8", func(t *testing.T) {
		stmts := []struct {
			q    string
			args []any
		}{
			{"INSERT INTO pipes_messages (name, event, message) VALUES ('utf_pipe', 'ev', ?)", []any{[]byte(bad)}},
			{"INSERT INTO pipes_messages (name, event, message) VALUES ('utf_pipe', ?, 'm')", []any{[]byte(bad)}},
			{"INSERT INTO pipes_messages (name, event, message) VALUES (?, 'ev', 'm')", []any{[]byte(bad)}},
			{"INSERT INTO users_auth (id, hash) VALUES (7, ?)", []any{[]byte(bad)}},
			{"INSERT INTO users_data (id, data) VALUES (7, ?)", []any{[]byte(bad)}},
			{"INSERT INTO users_messages (id, event, message) VALUES (7, 'ev', ?)", []any{[]byte(bad)}},
			{"INSERT INTO users_messages (id, event, message) VALUES (7, ?, 'm')", []any{[]byte(bad)}},
			{"INSERT INTO revoked_tokens (token) VALUES (?)", []any{[]byte(bad)}},
			{"INSERT INTO pipes_settings (name, length) VALUES (?, 10)", []any{[]byte(bad)}},
			// The same inside the statement text (COM_QUERY).
			{"INSERT INTO pipes_messages (name, event, message) VALUES ('utf_pipe', 'ev', '" + bad + "')", nil},
			{"INSERT INTO users_data (id, data) VALUES (7, '" + bad + "')", nil},
			{"INSERT INTO users_auth (id, hash) VALUES (7, '" + bad + "')", nil},
			{"SELECT * FROM pipes_messages WHERE name = '" + bad + "'", nil},
		}
		for _, st := range stmts {
			_, err := db.Exec(st.q, st.args...)
			if err == nil {
				if strings.HasPrefix(st.q, "SELECT") {
					continue // a query for a name that cannot exist may answer nothing
				}
				t.Errorf("%q accepted", st.q)
				continue
			}
			me := inMyErr(t, err, 1366)
			if !strings.Contains(me.Message, "UTF-8") && !strings.Contains(me.Message, "Incorrect") {
				t.Errorf("%q: unclear message %q", st.q, me.Message)
			}
		}
		for _, q := range []string{
			"SELECT COUNT(*) FROM users_data WHERE id = 7",
			"SELECT COUNT(*) FROM users_auth WHERE id = 7",
			"SELECT COUNT(*) FROM users_messages WHERE id = 7",
			"SELECT COUNT(*) FROM revoked_tokens",
			"SELECT COUNT(*) FROM pipes_messages WHERE name = 'utf_pipe'",
		} {
			checkOne(t, db, q, "0")
		}
	})

	run("WebSocket commands, invalid UTF-8", func(t *testing.T) {
		sub := inDial(t, s, inWSPath(0, 0, ""), nil)
		sub.info()
		sub.send("subscription\nweb_utf")
		b := inDial(t, s, inWSPath(0, 0, ""), nil)
		b.info()
		for _, cmd := range []string{
			"subscription\nweb_a\n" + bad,
			"web_pipe2\nweb_utf\nev\n*\n" + bad,
			"web_pipe2\nweb_utf\n" + bad + "\n*\nmsg",
			"web_pipe2\n" + bad + "\nev\n*\nmsg",
			"pipe_log\n" + bad + "\nm1\n",
			"pipe_count\nweb_a\n" + bad + "\n",
			"user_data\n" + bad + "\n5",
			"user_status\n" + bad,
			bad + "\nweb_a",
		} {
			b.send(cmd)
			if code, text := b.sysError(); code == "" || text == "" {
				t.Errorf("%q: error frame without code or text", cmd)
			}
		}
		b.sync()
		sub.sync()
		sub.quiet(200*time.Millisecond, nil) // nothing invalid was published
	})

	run("long-poll bodies, invalid UTF-8", func(t *testing.T) {
		l := inLPOpen(t, s, "sesion=&myid=0&devid=0&v=4.08&uuid=lpUTF")
		for _, cmd := range []string{"web_pipe2\nweb_utf\nev\n*\n" + bad, "subscription\n" + bad} {
			if st, body := l.send(cmd); st != 200 {
				t.Fatalf("send: %d %s", st, body)
			}
			l.until("an error frame", func(f map[string]any) bool { return f["pipe"] == "sys" && f["event"] == "error" })
		}
		if st, body, _ := inGet(t, s, "/lp/send?sid="+l.sid+"&cmd="+url.QueryEscape(bad), nil); st != 200 {
			t.Fatalf("GET send: %d %s", st, body)
		}
		l.until("an error frame", func(f map[string]any) bool { return f["pipe"] == "sys" && f["event"] == "error" })
	})

	run("URL parameters, invalid UTF-8", func(t *testing.T) {
		for _, path := range []string{
			"/ws/sesion=%FF%FE&myid=%FF&devid=%FF&v=4.08&uuid=%FF%C3%28abc&api=%FF",
			"/ws/sesion=" + url.PathEscape(bad) + "&myid=5&devid=0&v=4.08",
			"/ws?sesion=%FF&myid=5%FF&v=4.08&uuid=" + url.QueryEscape(bad),
		} {
			b := inDial(t, s, path, nil)
			if f := b.info(); f["authorized"] != false {
				t.Errorf("%s: %v", path, f)
			}
			b.send("subscription\nweb_x")
			b.sync()
		}
		// A bad v is the handshake error 418, after the upgrade.
		b := inDial(t, s, "/ws/sesion=x&myid=1&v=%FF%FE", nil)
		if f := b.next(); f["pipe"] != "sys" || !strings.Contains(fmt.Sprint(f["data"]), "418") {
			t.Errorf("bad v: %v", f)
		}
		if err := b.ended(); err == nil {
			t.Error("no close after the handshake error")
		}
		l := inLPOpen(t, s, "sesion=%FF&myid=%FF&devid=%FF&v=4.08&uuid=%FF%FE")
		f := l.until("serverInfo", func(f map[string]any) bool { return f["event"] == "serverInfo" })
		if f["authorized"] != false {
			t.Errorf("long-poll: %v", f)
		}
		// Headers with invalid UTF-8 end up in users_in_pipes as they
		// are, and reading them does not break anything.
		hb := inDial(t, s, inWSPath(0, 0, ""), http.Header{"User-Agent": {bad}, "Accept-Language": {bad}})
		hb.info()
		hb.send("subscription\nweb_hdr")
		inWaitUsers(t, db, "web_hdr", 1)
		queryStrings(t, db, "SELECT user_agent FROM users_in_pipes WHERE name = 'web_hdr'")
	})

	run("names with quotes, semicolons, NUL", func(t *testing.T) {
		names := []string{"a'b", "a\"b", "a;b", "x; DELETE FROM users_auth", "a\x00b", "a b", "a\\b", "a`b", "\x00", strings.Repeat("n", 65), "", "a", "имя"}
		for _, n := range names {
			for _, q := range []string{
				"INSERT INTO pipes_messages (name, event, message) VALUES (?, 'ev', 'm')",
				"INSERT INTO pipes_settings (name, length) VALUES (?, 5)",
				"INSERT INTO pipes_messages (name, event, message) VALUES ('good_name', ?, 'm')",
			} {
				_, err := db.Exec(q, n)
				if err == nil {
					if strings.Contains(q, "event") && (n == "" || n == "a") {
						continue // valid event names
					}
					t.Errorf("%s with %q accepted", q, n)
					continue
				}
				me, _ := err.(interface{ Error() string })
				if !strings.Contains(me.Error(), "1366") && !strings.Contains(me.Error(), "1406") {
					t.Errorf("%s with %q: %v, want 1366 or 1406", q, n, err)
				}
			}
		}
		mustExec(t, db, "INSERT INTO users_auth (id, hash) VALUES (77, 'keep77')")
		// A second statement smuggled into a literal is data; without
		// multi-statements a real second statement is a syntax error.
		_, err := db.Exec("INSERT INTO users_data (id, data) VALUES (77, 'x''); DELETE FROM users_auth; --')")
		if err != nil {
			t.Fatalf("quoted literal: %v", err)
		}
		checkOne(t, db, "SELECT data FROM users_data WHERE id = 77", "x'); DELETE FROM users_auth; --")
		_, err = db.Exec("SELECT 1; DELETE FROM users_auth")
		inMyErr(t, err, 1064)
		checkOne(t, db, "SELECT hash FROM users_auth WHERE id = 77", "keep77")

		b := inDial(t, s, inWSPath(0, 0, ""), nil)
		b.info()
		for _, n := range names[:10] {
			b.send("subscription\n" + n)
			if code, _ := b.sysError(); code != "invalid_pipe" && code != "forbidden" {
				t.Errorf("subscribe %q: %s", n, code)
			}
			b.send("web_pipe2\nweb_" + n + "\nev\n*\nhi")
			b.sysError()
		}
		b.sync()
	})

	run("user ids outside the safe range", func(t *testing.T) {
		for _, id := range []string{"0", "-1", "9007199254740992", "9223372036854775807", "18446744073709551615", "1.5", "'5x'", "NULL"} {
			for _, q := range []string{
				"INSERT INTO users_auth (id, hash) VALUES (%s, 'h')",
				"INSERT INTO users_data (id, data) VALUES (%s, 'd')",
				"INSERT INTO users_messages (id, event, message) VALUES (%s, 'e', 'm')",
			} {
				_, err := db.Exec(fmt.Sprintf(q, id))
				if err == nil {
					t.Errorf("%s accepted", fmt.Sprintf(q, id))
					continue
				}
				if !strings.Contains(err.Error(), "1366") && !strings.Contains(err.Error(), "1048") {
					t.Errorf("%s: %v, want 1366", fmt.Sprintf(q, id), err)
				}
			}
		}
		_, err := db.Exec("INSERT INTO users_auth (id, hash) VALUES (?, 'h')", int64(1)<<53)
		inMyErr(t, err, 1366)
		// The largest safe id works.
		mustExec(t, db, "INSERT INTO users_auth (id, hash) VALUES (9007199254740991, 'maxid')")
		checkOne(t, db, "SELECT hash FROM users_auth WHERE id = 9007199254740991", "maxid")

		// In the URL: anonymous, even with the right hash for the id
		// truncated or wrapped.
		for _, myid := range []string{"9007199254740992", "-9007199254740991", "18446744073709551617", "9007199254740991.0", "0x1F"} {
			b := inDial(t, s, "/ws/sesion=maxid&myid="+myid+"&devid=0&v=4.08", nil)
			if f := b.info(); f["authorized"] != false {
				t.Errorf("myid=%s: %v", myid, f)
			}
		}
		b := inDial(t, s, "/ws/sesion=maxid&myid=9007199254740991&devid=0&v=4.08", nil)
		if f := b.info(); f["authorized"] != true {
			t.Errorf("max safe id: %v", f)
		}
		b.send("user_data\nm1\n9007199254740992")
		if code, _ := b.sysError(); code != "invalid_user" {
			t.Errorf("user_data out of range: %s", code)
		}
	})

	run("10000 pipes in one subscription frame", func(t *testing.T) {
		b := inDial(t, s, inWSPath(0, 0, ""), nil)
		b.info()
		// Short names, so that the frame (59 KB) fits the message limit.
		var names []string
		for i := range 10000 {
			names = append(names, fmt.Sprintf("q%d", i))
		}
		b.send("subscription\n" + strings.Join(names, "\n"))
		if errs := inSysErrors(b.sync()); errs != 1 {
			t.Errorf("%d error frames for one subscription frame, want 1 (too many subscriptions)", errs)
		}
		var subscribed int
		if err := db.QueryRow("SELECT COUNT(*) FROM users_in_pipes WHERE name LIKE 'q%'").Scan(&subscribed); err != nil {
			t.Fatal(err)
		}
		if subscribed != 256 {
			t.Errorf("%d pipes subscribed, want 256", subscribed)
		}
		// 10000 invalid names: a bounded number of error frames.
		for i := range names {
			names[i] = fmt.Sprintf("b.%d", i)
		}
		b.send("subscription\n" + strings.Join(names, "\n"))
		if errs := inSysErrors(b.sync()); errs < 1 || errs > 11 {
			t.Errorf("%d error frames for 10000 bad names", errs)
		}
		b.close()
		deadline := time.Now().Add(inWait)
		for {
			var n int
			db.QueryRow("SELECT COUNT(*) FROM users_in_pipes WHERE name LIKE 'q%'").Scan(&n)
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d subscriptions left after the browser closed", n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	run("malformed, expired and revoked JWTs", func(t *testing.T) {
		good := inToken(t, 0, 42, time.Now().Add(time.Hour))
		revoked := inToken(t, 0, 42, time.Now().Add(2*time.Hour))
		mustExec(t, db, "INSERT INTO revoked_tokens (token) VALUES (?)", revoked)
		parts := strings.Split(good, ".")
		none := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
		for name, tok := range map[string]string{
			"expired":           inToken(t, 0, 42, time.Now().Add(-time.Minute)),
			"revoked":           revoked,
			"other user":        inToken(t, 0, 43, time.Now().Add(time.Hour)),
			"other tenant":      inToken(t, 3, 42, time.Now().Add(time.Hour)),
			"alg none":          none,
			"bad signature":     parts[0] + "." + parts[1] + ".AAAA" + parts[2][4:],
			"not base64":        "!!!.???.***",
			"three dots":        "...",
			"empty parts":       "a..b",
			"huge":              strings.Repeat("a", 3000) + "." + strings.Repeat("b", 3000) + "." + strings.Repeat("c", 3000),
			"json garbage":      "eyJ9.eyJ9.eyJ9",
			"non-canonical sig": parts[0] + "." + parts[1] + "." + parts[2] + "=",
		} {
			b := inDial(t, s, inWSPath(0, 42, tok), nil)
			if f := b.info(); f["authorized"] != false || f["data"] != "" {
				t.Errorf("%s JWT: %v", name, f)
			}
			b.send("subscription\nprivate_42")
			if code, _ := b.sysError(); code != "forbidden" {
				t.Errorf("%s JWT: private pipe: %s", name, code)
			}
			l := inLPOpen(t, s, "sesion="+url.QueryEscape(tok)+"&myid=42&devid=0&v=4.08")
			if f := l.until("serverInfo", func(f map[string]any) bool { return f["event"] == "serverInfo" }); f["authorized"] != false {
				t.Errorf("%s JWT over long-poll: %v", name, f)
			}
		}
		b := inDial(t, s, inWSPath(0, 42, good), nil)
		if f := b.info(); f["authorized"] != true {
			t.Errorf("valid JWT: %v", f)
		}
	})

	inHTTP.CloseIdleConnections()
	leaks.check("hostile text")
}
