package e2e

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRightsSecretsNotLogged: with debug logging, every path that handles
// a hash, a token or a password (registering and using browser keys,
// JWTs valid, expired, revoked and forged, wrong passwords, statements
// that fail around a hash, kicks on delete and revoke) leaves none of them
// in the server's log.
func TestRightsSecretsNotLogged(t *testing.T) {
	const (
		hash      = "HashSecretQ7w3"
		wrongHash = "WrongHashK2p9"
		wrongPass = "WrongPass-x81Lq"
		dev3Pass  = "Dev3Pass-Mm42z"
	)
	s := startServer(t, "", "--log-level", "debug", "--tenant-password", "3="+dev3Pass, "--handshake-timeout", "1s")
	db := s.db(t)
	valid := inToken(t, 0, 8, time.Now().Add(time.Hour))
	expired := inToken(t, 0, 8, time.Now().Add(-time.Hour))
	revoked := inToken(t, 0, 8, time.Now().Add(2*time.Hour))
	kicked := inToken(t, 0, 9, time.Now().Add(3*time.Hour))
	dev3Token := inTokenWith(t, dev3Pass, 3, 8, time.Now().Add(time.Hour))
	forged := valid[:strings.LastIndexByte(valid, '.')] + ".c2lnbmF0dXJlIGZvcmdlZCBieSBzb21lb25l"

	// CometQL: keys in statements, also in failing ones.
	mustExec(t, db, "INSERT INTO users_auth (id, hash) VALUES (7, '"+hash+"')")
	mustExec(t, db, "INSERT INTO users_auth (id, hash) VALUES (?, ?)", 9, hash)
	mustExec(t, db, "INSERT INTO revoked_tokens (token) VALUES (?)", revoked)
	for _, q := range []string{
		"INSERT INTO users_auth (id, hash) VALUES (7, '" + hash + "'",                // syntax
		"INSERT INTO users_auth (id, hash) VALUES (0, '" + hash + "')",               // bad id
		"INSERT INTO users_auth (id, hash) VALUES (7, '" + hash + "!!!')",            // bad hash
		"INSERT INTO users_auth (id, hash, x) VALUES (7, '" + hash + "', 1)",         // unknown column
		"INSERT INTO users_auth (id, hash) VALUES (7, '" + hash + hash + hash + "')", // too long
		"SELECT * FROM users_auth WHERE hash = '" + hash + "' AND nope = 1",
		"INSERT INTO revoked_tokens (token) VALUES ('" + valid + "', 2)",
	} {
		if _, err := db.Exec(q); err == nil {
			t.Fatalf("%s succeeded", q)
		}
	}
	queryStrings(t, db, "SELECT hash FROM users_auth")
	queryStrings(t, db, "SELECT token FROM revoked_tokens")
	// Wrong passwords, and the tenant's.
	for _, c := range [][2]string{{"root", wrongPass}, {"3", wrongPass}, {"root", dev3Pass}, {"4", dev3Pass}} {
		if err := inDB(t, s, c[0], c[1]).Ping(); err == nil {
			t.Fatalf("login %s succeeded", c[0])
		}
	}
	dev3 := inDB(t, s, "3", dev3Pass)
	mustExec(t, dev3, "INSERT INTO users_auth (id, hash) VALUES (8, ?)", hash)

	// Browsers: keys that authorize and keys that do not.
	for _, c := range []struct {
		dev, user int64
		key       string
		authed    bool
	}{
		{0, 7, hash, true}, {0, 7, wrongHash, false}, {0, 8, valid, true}, {0, 8, expired, false},
		{0, 8, revoked, false}, {0, 8, forged, false}, {3, 8, dev3Token, true}, {3, 8, hash, true},
		{0, 9, kicked, true}, {0, 0, hash, false},
	} {
		b := inDial(t, s, inWSPath(c.dev, c.user, c.key), nil)
		if f := b.info(); f["authorized"] != c.authed {
			t.Errorf("dev %d user %d: %v", c.dev, c.user, f)
		}
		l := inLPOpen(t, s, "sesion="+url.QueryEscape(c.key)+"&myid="+strconv.FormatInt(c.user, 10)+"&devid="+strconv.FormatInt(c.dev, 10)+"&v=4.08")
		l.until("serverInfo", func(f map[string]any) bool { return f["event"] == "serverInfo" })
	}
	// A handshake error with a key in the URL.
	b := inDial(t, s, "/ws/sesion="+hash+"&myid=7&v=bad", nil)
	b.ended()
	// Kicks: deleting a hash and revoking a token disconnect their users.
	u7 := inDial(t, s, inWSPath(0, 7, hash), nil)
	u7.info()
	u9 := inDial(t, s, inWSPath(0, 9, kicked), nil)
	u9.info()
	mustExec(t, db, "DELETE FROM users_auth WHERE id = 7")
	mustExec(t, db, "INSERT INTO revoked_tokens (token) VALUES (?)", kicked)
	u7.ended()
	u9.ended()
	// A CometQL client that never finishes its handshake after sending a
	// password hash.
	nc := inRaw(t, s.qlAddr)
	nc.Write([]byte(hash))
	inClosedWithin(t, nc, inWait)

	s.stop()
	logs := s.logs()
	if !strings.Contains(logs, "level=DEBUG") {
		t.Fatalf("no debug logging:\n%s", logs)
	}
	secrets := map[string]string{
		"hash": hash, "wrong hash": wrongHash, "root password": testPassword, "wrong password": wrongPass,
		"tenant password": dev3Pass, "dev 3 token": dev3Token, "forged token": forged,
	}
	for name, tok := range map[string]string{"valid token": valid, "expired token": expired, "revoked token": revoked, "kicked token": kicked} {
		secrets[name] = tok
		secrets[name+" signature"] = tok[strings.LastIndexByte(tok, '.')+1:]
	}
	for name, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("the %s appears in the server's log", name)
		}
	}
	if t.Failed() {
		t.Logf("server log:\n%s", logs)
	}
}
