package main

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cometql/cometql/store"
)

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func parseWith(t *testing.T, args []string, env map[string]string) (*options, error) {
	t.Helper()
	o := newOptions(io.Discard)
	err := o.parse(args, func(k string) string { return env[k] })
	return o, err
}

func TestPrecedenceFlagEnvFile(t *testing.T) {
	file := writeFile(t, "c.ini", "ql-addr = 10.0.0.1:1\nhttp_addr = 10.0.0.1:2\ndata-dir = /from/file\nqueue-ttl = 2h\n")
	o, err := parseWith(t,
		[]string{"--config", file, "--ql-addr", "10.0.0.3:1"},
		map[string]string{"COMETQL_QL_ADDR": "10.0.0.2:1", "COMETQL_HTTP_ADDR": "10.0.0.2:2", "COMETQL_MAX_SUBSCRIPTIONS": "7"})
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.QLAddr != "10.0.0.3:1" || c.HTTPAddr != "10.0.0.2:2" || c.DataDir != "/from/file" || c.MaxSubscriptions != 7 || c.QueueTTL != 2*time.Hour {
		t.Fatalf("config = %+v", c)
	}
}

func TestCometIni(t *testing.T) {
	ini := `; CppComet
[main]
password = 0000secret#notacomment
send_user_online_events = true

[db]
host = localhost

[ws]
ip = 0.0.0.0
thread_num = 4 ; threads
port = 8087 ; When connecting to js api
host = https://a.example, https://b.example

[cometql]
ip = 0.0.0.0
port = 3300
cometql = []Server=127.0.0.1,Port=3311
cometql = []Server=127.0.0.1,Port=3321
`
	o, err := parseWith(t, []string{"--config", writeFile(t, "comet.ini", ini)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := o.cfg
	if c.Password != "0000secret#notacomment" || c.HTTPAddr != "0.0.0.0:8087" || c.QLAddr != "0.0.0.0:3300" {
		t.Fatalf("config = %+v", c)
	}
	if !reflect.DeepEqual(c.AllowedOrigins, []string{"https://a.example", "https://b.example"}) {
		t.Fatalf("origins = %q", c.AllowedOrigins)
	}

	// CppComet's flag name, and [ws] host as its documentation writes it:
	// host names.
	o, err = parseWith(t, []string{"--conf", writeFile(t, "hosts.ini", "[ws]\nhost = example.com,www.example.com:8080\n")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.cfg.AllowedOrigins, []string{"example.com", "www.example.com:8080"}) {
		t.Fatalf("origins from host names = %q", o.cfg.AllowedOrigins)
	}
}

func TestConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown key", []string{"--config", writeFile(t, "a.ini", "ql-adr = x\n")}, nil, "unknown keys ql-adr"},
		{"missing file", []string{"--config", "/nonexistent/cometql.ini"}, nil, "not found"},
		{"bad env", nil, map[string]string{"COMETQL_MAX_SUBSCRIPTIONS": "many"}, "COMETQL_MAX_SUBSCRIPTIONS"},
		{"bad tenant password", []string{"--tenant-password", "x=y"}, nil, "DEV=PASSWORD"},
		{"argument", []string{"extra"}, nil, "unexpected argument"},
	}
	for _, c := range cases {
		_, err := parseWith(t, c.args, c.env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to mention %q", c.name, err, c.want)
		}
	}
}

func TestTenantPasswords(t *testing.T) {
	o, err := parseWith(t, []string{"--tenant-password", "3=three", "--tenant-password", "4=four"}, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(o.cfg.TenantPasswords, map[int64]string{3: "three", 4: "four"}) {
		t.Fatalf("tenant passwords = %v", o.cfg.TenantPasswords)
	}
}

func TestRunVersionAndBadConfig(t *testing.T) {
	var out, errOut strings.Builder
	if code := run([]string{"--version"}, func(string) string { return "" }, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "cometql ") {
		t.Fatalf("--version: code %d, out %q", code, out.String())
	}
	errOut.Reset()
	if code := run([]string{"--log-level", "loud"}, func(string) string { return "" }, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "log-level") {
		t.Fatalf("bad log level: code %d, stderr %q", code, errOut.String())
	}
	errOut.Reset()
	dir := filepath.Join(t.TempDir(), "ro")
	os.Mkdir(dir, 0o500)
	if os.Getuid() != 0 { // root writes anywhere
		code := run([]string{"--data-dir", filepath.Join(dir, "sub"), "--ql-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
			func(string) string { return "" }, &out, &errOut)
		if code != 1 || !strings.Contains(errOut.String(), "cannot start") {
			t.Fatalf("unwritable data dir: code %d, stderr %q", code, errOut.String())
		}
	}
}

func TestRunPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var out, errOut strings.Builder
	code := run([]string{"--data-dir", t.TempDir(), "--password", "pw", "--ql-addr", ln.Addr().String(), "--http-addr", "127.0.0.1:0"},
		func(string) string { return "" }, &out, &errOut)
	if code != 1 || !strings.Contains(errOut.String(), "address already in use") {
		t.Fatalf("port taken: code %d, stderr %q", code, errOut.String())
	}
}

func TestSyncFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want store.Sync
	}{
		{nil, nil, store.SyncNormal},
		{[]string{"--sync", "full"}, nil, store.SyncFull},
		{nil, map[string]string{"COMETQL_SYNC": "full"}, store.SyncFull},
		{[]string{"--sync", "normal"}, map[string]string{"COMETQL_SYNC": "full"}, store.SyncNormal},
	} {
		o, err := parseWith(t, c.args, c.env)
		if err != nil {
			t.Fatal(err)
		}
		got, err := o.cfg.StoreSync()
		if err != nil || got != c.want {
			t.Errorf("%v %v: sync %v (%v), want %v", c.args, c.env, got, err, c.want)
		}
	}
	o, err := parseWith(t, []string{"--sync", "sometimes"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.cfg.Validate(); err == nil || !strings.Contains(err.Error(), "sync") {
		t.Fatalf("--sync sometimes: Validate %v", err)
	}
}
