package mysqlproto_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	gomysql "github.com/go-sql-driver/mysql"

	"github.com/cometql/cometql/mysqlproto"
	"github.com/cometql/cometql/pipes"
	"github.com/cometql/cometql/sqlengine"
)

// greeting reads the server's initial handshake packet.
func greeting(t *testing.T, addr string) (version string, capab uint32, plugin string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(nc, hdr[:]); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, int(hdr[0])|int(hdr[1])<<8|int(hdr[2])<<16)
	if _, err := io.ReadFull(nc, p); err != nil {
		t.Fatal(err)
	}
	if p[0] != 10 {
		t.Fatalf("protocol %d", p[0])
	}
	i := bytes.IndexByte(p[1:], 0)
	version = string(p[1 : 1+i])
	pos := 1 + i + 1 + 4 + 8 + 1
	capab = uint32(binary.LittleEndian.Uint16(p[pos:]))
	pos += 2 + 1 + 2
	capab |= uint32(binary.LittleEndian.Uint16(p[pos:])) << 16
	pos += 2 + 1 + 10 + 13
	plugin = string(bytes.TrimRight(p[pos:], "\x00"))
	return version, capab, plugin
}

func TestGreeting(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{})
	version, capab, plugin := greeting(t, ts.addr)
	if version != sqlengine.ServerVersion() || !strings.HasPrefix(version, "8.0.36-cometql-") {
		t.Errorf("version %q", version)
	}
	if capab&mysql.CLIENT_SSL != 0 {
		t.Error("CLIENT_SSL advertised without TLS")
	}
	if capab&mysql.CLIENT_MULTI_STATEMENTS == 0 || capab&mysql.CLIENT_PROTOCOL_41 == 0 {
		t.Errorf("capabilities %#x", capab)
	}
	if capab&mysql.CLIENT_COMPRESS != 0 {
		t.Error("compression advertised")
	}
	if plugin != "mysql_native_password" {
		t.Errorf("plugin %q", plugin)
	}
}

func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

func TestTLS(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{TLS: selfSigned(t)})
	_, capab, _ := greeting(t, ts.addr)
	if capab&mysql.CLIENT_SSL == 0 {
		t.Fatal("CLIENT_SSL not advertised with TLS configured")
	}
	for _, mode := range []string{"tls=skip-verify", "tls=false"} {
		c := ts.conn(t, "root", rootPassword, mode)
		mustExec(t, c, "INSERT INTO users_data (id, data) VALUES (?, ?)", 1, "über TLS")
		if got := query(t, c, "SELECT data FROM users_data WHERE id = ?", 1); got != "über TLS" {
			t.Errorf("%s: %q", mode, got)
		}
		mustExec(t, c, "DELETE FROM users_data")
	}
	// caching_sha2_password over TLS: the password travels in clear inside TLS.
	ts2 := startServer(t, mysqlproto.Config{TLS: selfSigned(t), AuthPlugin: "caching_sha2_password"})
	c := ts2.conn(t, "root", rootPassword, "tls=skip-verify&allowNativePasswords=false")
	if got := query(t, c, "SELECT 'sha2 over tls'"); got != "sha2 over tls" {
		t.Errorf("%q", got)
	}
}

type sink struct {
	mu     sync.Mutex
	frames [][]byte
}

func (s *sink) Send(f []byte) { s.mu.Lock(); s.frames = append(s.frames, f); s.mu.Unlock() }
func (s *sink) Close()        {}

func TestCommandsAndInfo(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{})
	ctx := context.Background()
	// The info string is read by this client only with session tracking.
	c, err := client.Connect(ts.addr, "root", rootPassword, "", func(c *client.Conn) error {
		c.SetCapability(mysql.CLIENT_SESSION_TRACK)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Ping(); err != nil {
		t.Fatal(err)
	}
	if err := c.UseDB("CometQL_v1"); err != nil {
		t.Fatal(err)
	}
	var me *mysql.MyError
	if err := c.UseDB("elsewhere"); !errors.As(err, &me) || me.Code != 1049 {
		t.Fatalf("use elsewhere: %v", err)
	}
	fields, err := c.FieldList("pipes_messages", "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fields {
		names = append(names, fmt.Sprintf("%s:%d", f.Name, f.Type))
	}
	if got := strings.Join(names, " "); got != "id:253 time:8 name:253 index:8 event:253 message:252 user_id:8" {
		t.Errorf("field list %s", got)
	}
	if _, err := c.FieldList("nope", ""); !errors.As(err, &me) || me.Code != 1146 {
		t.Fatalf("field list nope: %v", err)
	}
	// Delivered: N counts the browser connections reached.
	var sessions []*pipes.Session
	for range 3 {
		s, err := ts.hub.Open(ctx, pipes.SessionInfo{}, &sink{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		s.Subscribe(ctx, []string{"news"})
		sessions = append(sessions, s)
	}
	r, err := c.Execute("INSERT INTO pipes_messages (name, event, message) VALUES ('news', 'e', 'one'), ('news', 'e', 'two'), ('nobody', 'e', 'x')")
	if err != nil {
		t.Fatal(err)
	}
	if r.StatusMessage != "Delivered: 6" || r.AffectedRows != 3 {
		t.Errorf("info %q affected %d", r.StatusMessage, r.AffectedRows)
	}
	r, err = c.Execute("INSERT INTO users_messages (id, event, message) VALUES (42, 'e', 'queued')")
	if err != nil {
		t.Fatal(err)
	}
	if r.StatusMessage != "Delivered: 0" {
		t.Errorf("private info %q", r.StatusMessage)
	}
	// (This client's StatusMessage of prepared statements points into a
	// reused buffer; the Node test checks the info of execute().)
	r, err = c.Execute("INSERT INTO users_messages (id, event, message) VALUES (?, ?, ?)", 43, "e", "queued")
	if err != nil || r.AffectedRows != 1 {
		t.Fatalf("prepared insert: %v", err)
	}
	// Results of the binary protocol through go-mysql's client.
	r, err = c.Execute("SELECT id, message, `index` FROM users_messages WHERE id = ?", 42)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := r.GetInt(0, 0); id != 42 {
		t.Errorf("id %d", id)
	}
	if msg, _ := r.GetString(0, 1); msg != "queued" {
		t.Errorf("message %q", msg)
	}
	if got := len(sessions); got != 3 {
		t.Fatal(got)
	}
}

func TestShutdownWaitsForStatements(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{})
	busy := ts.conn(t, "root", rootPassword, "")
	idle := ts.conn(t, "root", rootPassword, "")
	query(t, idle, "SELECT 1")
	query(t, busy, "SELECT 1")
	// A statement still running when Shutdown starts gets its answer.
	result := make(chan error, 1)
	go func() {
		_, err := busy.ExecContext(context.Background(), "INSERT INTO users_data (id, data) VALUES (1, '"+strings.Repeat("x", 60000)+"')")
		result <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-result; err != nil && !errors.Is(err, gomysql.ErrInvalidConn) && !errors.Is(err, sql.ErrConnDone) && !strings.Contains(err.Error(), "connection") {
		t.Errorf("in-flight statement: %v", err)
	}
	if _, err := idle.ExecContext(context.Background(), "SELECT 1"); err == nil {
		t.Error("idle connection still open after shutdown")
	}
}

func TestHandshakeTimeout(t *testing.T) {
	ts := startServer(t, mysqlproto.Config{HandshakeTimeout: 200 * time.Millisecond})
	nc, err := net.DialTimeout("tcp", ts.addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	// The greeting, then nothing from us: the server hangs up.
	if _, err := io.ReadAll(nc); err != nil {
		t.Fatalf("server did not close the silent connection: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ts.srv.ConnectionCount() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections", ts.srv.ConnectionCount())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
