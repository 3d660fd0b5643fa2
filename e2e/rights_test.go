package e2e

import (
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const tenant3Password = "tenant3-pw-Zq81"

// inRows returns every row of a query as strings (NULL as "NULL").
func inRows(t *testing.T, db *sql.DB, q string, args ...any) [][]string {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out [][]string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = "NULL"
			if v.Valid {
				row[i] = v.String
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRightsTenants: tenant 3 sees nothing of tenant 0 and changes nothing
// of it, over CometQL (every table, SHOW STATUS, SHOW PROCESSLIST,
// deletes) and from browsers (messages, history, counts, members, user
// data and status, hashes); tenant 3 logs in only with its own password.
func TestRightsTenants(t *testing.T) {
	s := startServer(t, "", "--tenant-password", "3="+tenant3Password)
	root := s.db(t)

	// Tenant 0: history, a hash, data, a queued private message, a revoked
	// token, an online user on a few pipes.
	mustExec(t, root, "INSERT INTO pipes_settings (name, length) VALUES ('news', 10)")
	mustExec(t, root, "INSERT INTO pipes_messages (name, event, message) VALUES ('news', 'e', 'dev0 history')")
	mustExec(t, root, "INSERT INTO users_auth (id, hash) VALUES (5, 'hash5dev0')")
	mustExec(t, root, "INSERT INTO users_data (id, data) VALUES (5, 'data of dev0 user 5')")
	mustExec(t, root, "INSERT INTO users_messages (id, event, message) VALUES (6, 'e', 'queued for dev0 user 6')")
	mustExec(t, root, "INSERT INTO revoked_tokens (token) VALUES ('dev0.revoked.token')")
	u5 := inDial(t, s, inWSPath(0, 5, "hash5dev0"), nil)
	if f := u5.info(); f["authorized"] != true {
		t.Fatalf("dev 0 user 5: %v", f)
	}
	u5.send("subscription\nnews\nweb_room\ntrack_room\nprivate_5")
	inWaitUsers(t, root, "news", 1)

	// Logins: tenant 3 with its password only.
	inMyErr(t, inDB(t, s, "3", testPassword).Ping(), 1045)
	inMyErr(t, inDB(t, s, "root", tenant3Password).Ping(), 1045)
	inMyErr(t, inDB(t, s, "03x", tenant3Password).Ping(), 1045)
	dev3 := inDB(t, s, "3", tenant3Password)
	if err := dev3.Ping(); err != nil {
		t.Fatalf("tenant 3 login: %v", err)
	}

	// Every table, as tenant 3, without and with the keys of dev 0's rows.
	tables := queryStrings(t, dev3, "SHOW TABLES")
	if len(tables) < 9 {
		t.Fatalf("tables %v", tables)
	}
	for _, table := range tables {
		if rows := inRows(t, dev3, "SELECT * FROM "+table); len(rows) != 0 {
			t.Errorf("tenant 3: SELECT * FROM %s = %v", table, rows)
		}
	}
	for q, want := range map[string]string{
		"SELECT COUNT(*) FROM pipes_messages WHERE name = 'news'":                "[[0]]",
		"SELECT COUNT(*) FROM pipes_settings WHERE name = 'news'":                "[[0]]",
		"SELECT users FROM pipes WHERE name = 'news'":                            "[[0]]",
		"SELECT COUNT(*) FROM users_in_pipes WHERE name IN ('news', 'web_room')": "[[0]]",
		"SELECT COUNT(*) FROM users_auth WHERE id = 5":                           "[[0]]",
		"SELECT COUNT(*) FROM users_data WHERE id = 5":                           "[[0]]",
		"SELECT COUNT(*) FROM users_messages WHERE id = 6":                       "[[0]]",
		"SELECT time FROM users_time WHERE id = 5":                               "[[-1]]",
		"SELECT COUNT(*) FROM revoked_tokens WHERE token = 'dev0.revoked.token'": "[[0]]",
	} {
		if got := fmt.Sprint(inRows(t, dev3, q)); got != want {
			t.Errorf("tenant 3: %s = %s, want %s", q, got, want)
		}
	}
	status := map[string]string{}
	for _, r := range inRows(t, dev3, "SHOW STATUS") {
		status[r[0]] = r[1]
	}
	if status["user_online"] != "0" {
		t.Errorf("tenant 3: user_online = %q", status["user_online"])
	}
	for _, r := range inRows(t, dev3, "SHOW PROCESSLIST") {
		if r[1] != "3" {
			t.Errorf("tenant 3 sees the connection of %q: %v", r[1], r)
		}
	}

	// Tenant 3 deletes by dev 0's keys: nothing of dev 0 goes.
	for _, q := range []string{
		"DELETE FROM users_auth WHERE id = 5", "DELETE FROM users_data WHERE id = 5",
		"DELETE FROM pipes_messages WHERE name = 'news'", "DELETE FROM pipes_settings WHERE name = 'news'",
		"DELETE FROM users_messages WHERE id = 6", "DELETE FROM revoked_tokens WHERE token = 'dev0.revoked.token'",
	} {
		r := mustExec(t, dev3, q)
		if n, _ := r.RowsAffected(); n != 0 {
			t.Errorf("tenant 3: %s deleted %d rows", q, n)
		}
	}
	checkOne(t, root, "SELECT hash FROM users_auth WHERE id = 5", "hash5dev0")
	checkOne(t, root, "SELECT data FROM users_data WHERE id = 5", "data of dev0 user 5")
	checkOne(t, root, "SELECT message FROM pipes_messages WHERE name = 'news'", "dev0 history")
	checkOne(t, root, "SELECT length FROM pipes_settings WHERE name = 'news'", "10")
	checkOne(t, root, "SELECT message FROM users_messages WHERE id = 6", "queued for dev0 user 6")
	checkOne(t, root, "SELECT COUNT(*) FROM revoked_tokens", "1")
	if u5.sync(); len(u5.frames) != 0 {
		t.Errorf("dev 0 user 5 got frames: %v", <-u5.frames)
	}

	// Browsers of tenant 3.
	b3 := inDial(t, s, inWSPath(3, 0, ""), nil)
	b3.info()
	b3.send("subscription\nnews\nweb_room\ntrack_room")
	inWaitUsers(t, dev3, "news", 1)
	// dev 0's hash and dev 0's user do not authorize in dev 3.
	fake := inDial(t, s, inWSPath(3, 5, "hash5dev0"), nil)
	if f := fake.info(); f["authorized"] != false {
		t.Errorf("dev 0's hash authorized in dev 3: %v", f)
	}
	// Messages of one tenant do not reach the other.
	mustExec(t, root, "INSERT INTO pipes_messages (name, event, message) VALUES ('news', 'e', 'for dev 0')")
	mustExec(t, dev3, "INSERT INTO pipes_messages (name, event, message) VALUES ('news', 'e', 'for dev 3')")
	mustExec(t, dev3, "INSERT INTO users_messages (id, event, message) VALUES (5, 'e', 'dev 3 private to 5')")
	f := b3.until("dev 3's message", func(f map[string]any) bool { return f["pipe"] == "news" })
	if f["data"] != "for dev 3" {
		t.Errorf("dev 3 browser got %v", f)
	}
	f = u5.until("dev 0's message", func(f map[string]any) bool { return f["pipe"] == "news" })
	if f["data"] != "for dev 0" {
		t.Errorf("dev 0 browser got %v", f)
	}
	u5.send("web_pipe2\nweb_room\ne\n*\nfrom dev 0 browser")
	u5.sync()
	b3.sync()
	b3.quiet(300*time.Millisecond, nil)
	u5.quiet(300*time.Millisecond, func(f map[string]any) bool { return strings.HasPrefix(fmt.Sprint(f["pipe"]), "_answer") })

	// Every read command of a dev 3 browser sees dev 3 only.
	b3.send("pipe_log\nnews\nlog1\n")
	frames := b3.sync()
	for _, f := range frames {
		if f["data"] == "dev0 history" || f["data"] == "for dev 0" {
			t.Errorf("dev 3 replayed dev 0's history: %v", f)
		}
	}
	ask := func(cmd, marker string) map[string]any {
		b3.send(cmd)
		return b3.until("the answer to "+cmd, func(f map[string]any) bool { return f["marker"] == marker || f["pipe"] == "_answer_user_status" })
	}
	if f := ask("pipe_count\nweb_room\nc1\n", "c1"); fmt.Sprint(f["data"].(map[string]any)["user_in_pipe"]) != "1" {
		t.Errorf("dev 3 pipe_count web_room = %v (only its own browser)", f["data"])
	}
	if f := ask("track_pipe_users\ntrack_room\nt1", "t1"); len(f["data"].([]any)) != 1 {
		t.Errorf("dev 3 track_pipe_users = %v (only its own browser)", f["data"])
	}
	if f := ask("user_data\nd1\n5", "d1"); f["data"].(map[string]any)["user_data"] != "" {
		t.Errorf("dev 3 user_data 5 = %v", f["data"])
	}
	if f := ask("user_status\n5", ""); f["data"].(map[string]any)["online"] != false {
		t.Errorf("dev 3 user_status 5 = %v", f["data"])
	}
}

// TestRightsBrowsers: browsers publish only to web_* (and webauth_* when
// authorized), cannot pose as another user (no key: anonymous; the
// user_id of their messages is the authorized one, 0 for anonymous), and
// cannot subscribe to private_* or read its history anonymously.
func TestRightsBrowsers(t *testing.T) {
	s := startServer(t, "")
	db := s.db(t)
	mustExec(t, db, "INSERT INTO users_auth (id, hash) VALUES (5, 'key5')")
	mustExec(t, db, "INSERT INTO pipes_settings (name, length) VALUES ('private_5', 10)")
	mustExec(t, db, "INSERT INTO pipes_messages (name, event, message) VALUES ('private_5', 'e', 'secret history')")

	watcher := inDial(t, s, inWSPath(0, 0, ""), nil)
	watcher.info()
	watcher.send("subscription\nweb_chat\nwebauth_room\nnews")
	inWaitUsers(t, db, "web_chat", 1)
	anon := inDial(t, s, inWSPath(0, 0, ""), nil)
	anon.info()
	user := inDial(t, s, inWSPath(0, 5, "key5"), nil)
	if f := user.info(); f["authorized"] != true {
		t.Fatalf("user 5: %v", f)
	}
	forgedNoKey := inDial(t, s, inWSPath(0, 5, ""), nil)
	forgedBadKey := inDial(t, s, inWSPath(0, 5, "key6"), nil)
	forgedQuery := inDial(t, s, "/ws?sesion=x&myid=5&v=4.08&myid=5", nil)
	for name, b := range map[string]*inBrowser{"no key": forgedNoKey, "wrong key": forgedBadKey, "query": forgedQuery} {
		if f := b.info(); f["authorized"] != false {
			t.Errorf("myid=5 with %s: %v", name, f)
		}
	}

	publish := func(b *inBrowser, pipe, msg string) (code string) {
		t.Helper()
		b.send("web_pipe2\n" + pipe + "\ne\n*\n" + msg)
		for _, f := range b.sync() {
			if f["pipe"] == "sys" {
				return f["data"].(map[string]any)["code"].(string)
			}
		}
		return ""
	}
	received := func(msg string) map[string]any {
		t.Helper()
		return watcher.until("the message "+msg, func(f map[string]any) bool { return f["data"] == msg })
	}
	// Outside web_*/webauth_*: refused for everyone.
	for _, b := range []*inBrowser{anon, user, forgedNoKey} {
		for _, pipe := range []string{"news", "private_5", "track_x", "sys", "msg", "user_status_5", "@news"} {
			if code := publish(b, pipe, "nope"); code != "forbidden" && code != "invalid_pipe" {
				t.Errorf("web_pipe2 to %s: %q", pipe, code)
			}
		}
	}
	// webauth_*: authorized only.
	for name, b := range map[string]*inBrowser{"anonymous": anon, "no key": forgedNoKey, "wrong key": forgedBadKey} {
		if code := publish(b, "webauth_room", "nope"); code != "forbidden" {
			t.Errorf("%s to webauth_room: %q", name, code)
		}
	}
	if code := publish(user, "webauth_room", "auth hello"); code != "" {
		t.Fatalf("user 5 to webauth_room: %s", code)
	}
	if f := received("auth hello"); fmt.Sprint(f["user_id"]) != "5" {
		t.Errorf("webauth message from user 5: %v", f)
	}
	// The sender id is the authorized one, never the claimed one.
	if publish(forgedNoKey, "web_chat", "forged hello") != "" {
		t.Fatal("anonymous web_chat refused")
	}
	if f := received("forged hello"); fmt.Sprint(f["user_id"]) != "0" {
		t.Errorf("message of a browser claiming myid=5: %v", f)
	}
	publish(user, "web_chat", "real hello")
	if f := received("real hello"); fmt.Sprint(f["user_id"]) != "5" {
		t.Errorf("message of user 5: %v", f)
	}
	publish(user, "@web_chat", "anonymous hello")
	if f := received("anonymous hello"); fmt.Sprint(f["user_id"]) != "0" {
		t.Errorf("@ message of user 5: %v", f)
	}
	// CppComet's client reads "A::<id>;" as the sender: refused from browsers.
	if code := publish(forgedNoKey, "web_chat", "A::5;I am user 5"); code != "invalid_message" {
		t.Errorf("A:: message: %q", code)
	}
	watcher.quiet(200*time.Millisecond, nil)

	// private_*: anonymous browsers can neither subscribe nor replay.
	for name, b := range map[string]*inBrowser{"anonymous": anon, "no key": forgedNoKey} {
		b.send("subscription\nprivate_5")
		if code, _ := b.sysError(); code != "forbidden" {
			t.Errorf("%s subscribing private_5: %s", name, code)
		}
		b.send("pipe_log\nprivate_5\nm1\n")
		if code, _ := b.sysError(); code != "forbidden" {
			t.Errorf("%s replaying private_5: %s", name, code)
		}
	}
	user.send("subscription\nprivate_5")
	inWaitUsers(t, db, "private_5", 1)
	mustExec(t, db, "INSERT INTO pipes_messages (name, event, message) VALUES ('private_5', 'e', 'for 5 only')")
	user.until("the private message", func(f map[string]any) bool { return f["data"] == "for 5 only" })
	for _, b := range []*inBrowser{anon, forgedNoKey, forgedBadKey} {
		for _, f := range b.sync() {
			if f["data"] == "for 5 only" || f["data"] == "secret history" {
				t.Errorf("private message reached an anonymous browser: %v", f)
			}
		}
	}
	// users_messages reach the authorized user only.
	mustExec(t, db, "INSERT INTO users_messages (id, event, message) VALUES (5, 'pm', 'pm for 5')")
	user.until("the private message", func(f map[string]any) bool { return f["pipe"] == "msg" && f["data"] == "pm for 5" })
	for _, b := range []*inBrowser{anon, forgedNoKey, forgedBadKey} {
		for _, f := range b.sync() {
			if f["pipe"] == "msg" {
				t.Errorf("users_messages reached a browser claiming user 5: %v", f)
			}
		}
	}
}

// TestRightsOrigin: with an allow-list, a WebSocket from another origin is
// refused with 403 before the upgrade, long-poll calls from it (Origin, or
// Referer for JSONP) are refused, and allowed origins and non-browser
// clients (no Origin) are served.
func TestRightsOrigin(t *testing.T) {
	const good, evil = "https://good.example", "https://evil.example"
	s := startServer(t, "", "--allowed-origins", good)
	for _, origin := range []string{evil, "https://good.example.evil.example", "null", "http://good.example"} {
		_, resp, err := inTryDial(t, s, inWSPath(0, 0, ""), http.Header{"Origin": {origin}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("WebSocket from %s: %v %v, want 403", origin, err, resp)
		}
	}
	ok := inDial(t, s, inWSPath(0, 0, ""), http.Header{"Origin": {good}})
	ok.info()
	noOrigin := inDial(t, s, inWSPath(0, 0, ""), nil)
	noOrigin.info()

	l := inLPOpen(t, s, "sesion=&v=4.08")
	for _, c := range []struct {
		path string
		hdr  http.Header
	}{
		{"/lp/open?sesion=&v=4.08", http.Header{"Origin": {evil}}},
		{"/lp/poll?sid=" + l.sid, http.Header{"Origin": {evil}}},
		{"/lp/send?sid=" + l.sid + "&cmd=" + url.QueryEscape("subscription\nweb_x"), http.Header{"Origin": {evil}}},
		{"/lp/open?sesion=&v=4.08&callback=cb", http.Header{"Referer": {evil + "/page.html"}}},
	} {
		st, body, hdr := inGet(t, s, c.path, c.hdr)
		if !strings.Contains(body, `"code":403`) || (st != 403 && !strings.HasPrefix(body, "cb(")) {
			t.Errorf("%s from %v: %d %s", c.path, c.hdr, st, body)
		}
		if a := hdr.Get("Access-Control-Allow-Origin"); a != "" {
			t.Errorf("%s: Access-Control-Allow-Origin %q for a refused origin", c.path, a)
		}
	}
	st, body, hdr := inGet(t, s, "/lp/open?sesion=&v=4.08", http.Header{"Origin": {good}})
	if st != 200 || hdr.Get("Access-Control-Allow-Origin") != good {
		t.Errorf("long-poll from the allowed origin: %d %s %v", st, body, hdr)
	}
	inWaitMetric(t, s, `cometql_browser_handshake_errors_total{code="403"}`, 8)
}
