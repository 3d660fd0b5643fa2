package mysqlproto_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cometql/cometql/mysqlproto"
)

// Real clients other than Go's driver, run as subprocesses against a test
// server. Each test skips, saying why, only when its interpreter or driver is
// not installed (Debian: mariadb-client, php-cli php-mysql, python3-pymysql;
// npm: mysql2, installed by the test into testdata/clients/node; Java with
// Debian's libmariadb-java for JDBC).

// skipClient skips a client test whose client is missing, unless the
// environment says every client must run (CI sets COMETQL_REQUIRE_CLIENTS).
func skipClient(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("COMETQL_REQUIRE_CLIENTS") != "" {
		t.Fatalf("COMETQL_REQUIRE_CLIENTS is set but %s", why)
	}
	t.Skip(why)
}

func runClient(t *testing.T, ts *testServer, dir string, name string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(ts.addr)
	values, _ := json.Marshal(roundTripValues)
	var b64 strings.Builder
	for _, v := range roundTripValues {
		b64.WriteString(base64.StdEncoding.EncodeToString([]byte(v)) + "\n")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "COMETQL_HOST="+host, "COMETQL_PORT="+port, "COMETQL_USER=root",
		"COMETQL_PASSWORD="+rootPassword, "COMETQL_VALUES="+string(values), "COMETQL_VALUES_B64="+b64.String(),
		"COMETQL_TENANT_USER=3", "COMETQL_TENANT_PASSWORD="+tenantPassword)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\nstdout: %s\nstderr: %s", name, args, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func clientsDir(t *testing.T) string {
	dir, err := filepath.Abs(filepath.Join("testdata", "clients"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPHPClients(t *testing.T) {
	php, err := exec.LookPath("php")
	if err != nil {
		skipClient(t, "php is not installed (Debian: php-cli php-mysql)")
	}
	mods, _ := exec.Command(php, "-m").Output()
	if !bytes.Contains(mods, []byte("mysqli")) || !bytes.Contains(mods, []byte("pdo_mysql")) {
		skipClient(t, "php has no mysqli/pdo_mysql (Debian: php-mysql)")
	}
	ts := startServer(t, mysqlproto.Config{})
	if out := runClient(t, ts, clientsDir(t), php, "php_client.php"); strings.TrimSpace(out) != "ok" {
		t.Fatalf("php: %q", out)
	}
}

func TestPyMySQL(t *testing.T) {
	var python string
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil && exec.Command(path, "-c", "import pymysql").Run() == nil {
			python = path
			break
		}
	}
	if python == "" {
		skipClient(t, "no python3 with PyMySQL (Debian: python3-pymysql)")
	}
	ts := startServer(t, mysqlproto.Config{})
	if out := runClient(t, ts, clientsDir(t), python, "python_client.py"); strings.TrimSpace(out) != "ok" {
		t.Fatalf("python: %q", out)
	}
}

func TestNodeMySQL2(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		skipClient(t, "node is not installed")
	}
	dir := filepath.Join(clientsDir(t), "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "mysql2")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			skipClient(t, "mysql2 is not installed and there is no npm to install it")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			skipClient(t, fmt.Sprintf("npm ci failed, cannot install mysql2: %v\n%s", err, out))
		}
	}
	ts := startServer(t, mysqlproto.Config{})
	if out := runClient(t, ts, dir, node, "client.js"); strings.TrimSpace(out) != "ok" {
		t.Fatalf("node: %q", out)
	}
}

// TestJDBC runs MariaDB Connector/J (Debian's libmariadb-java), with
// server-side prepared statements and with its own client-side escaping.
func TestJDBC(t *testing.T) {
	java, err := exec.LookPath("java")
	if err != nil {
		skipClient(t, "java is not installed")
	}
	javac, err := exec.LookPath("javac")
	if err != nil {
		skipClient(t, "javac is not installed")
	}
	const jar = "/usr/share/java/mariadb-java-client.jar"
	if _, err := os.Stat(jar); err != nil {
		skipClient(t, "no JDBC driver at "+jar+" (Debian: libmariadb-java)")
	}
	classes := t.TempDir()
	src := filepath.Join(clientsDir(t), "java", "JdbcClient.java")
	if out, err := exec.Command(javac, "-d", classes, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, out)
	}
	ts := startServer(t, mysqlproto.Config{})
	if out := runClient(t, ts, classes, java, "-cp", classes+":"+jar, "JdbcClient"); strings.TrimSpace(out) != "ok" {
		t.Fatalf("jdbc: %q", out)
	}
}

func mariadbCLI(t *testing.T) string {
	for _, name := range []string{"mariadb", "mysql"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	skipClient(t, "the mariadb client is not installed (Debian: mariadb-client)")
	return ""
}

// cli runs the mariadb CLI in batch mode and returns stdout, stderr and the
// exit code.
func cli(t *testing.T, bin string, ts *testServer, user, pw string, extra []string, sql string) (string, string, int) {
	t.Helper()
	host, port, _ := net.SplitHostPort(ts.addr)
	args := append([]string{"--batch", "--protocol=TCP", "-h" + host, "-P" + port, "-u" + user, "-p" + pw}, extra...)
	args = append(args, "CometQL_v1", "-e", sql)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no ~/.my.cnf
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func TestMariaDBCLI(t *testing.T) {
	bin := mariadbCLI(t)
	ts := startServer(t, mysqlproto.Config{})
	out, errOut, code := cli(t, bin, ts, "root", rootPassword, nil, "show tables")
	if code != 0 || !strings.Contains(out, "Tables\npipes_messages\npipes\n") || !strings.Contains(out, "revoked_tokens") {
		t.Fatalf("show tables: code %d\n%s\n%s", code, out, errOut)
	}
	_, errOut, code = cli(t, bin, ts, "root", rootPassword, nil,
		`INSERT INTO pipes_settings (name, length) VALUES ('cli_pipe', 10); INSERT INTO pipes_messages (name, event, message) VALUES ('cli_pipe', 'ev', 'it\'s "quoted" Привет')`)
	if code != 0 {
		t.Fatalf("insert: code %d: %s", code, errOut)
	}
	out, errOut, code = cli(t, bin, ts, "root", rootPassword, []string{"--raw"}, "SELECT name, event, message FROM pipes_messages WHERE name = 'cli_pipe'")
	if code != 0 || out != "name\tevent\tmessage\ncli_pipe\tev\tit's \"quoted\" Привет\n" {
		t.Fatalf("select: code %d %q %s", code, out, errOut)
	}
	_, errOut, code = cli(t, bin, ts, "root", rootPassword, nil, "INSERT INTO pipes (name) VALUES ('x')")
	if code != 1 || !strings.Contains(errOut, "ERROR 1288 (HY000)") || !strings.Contains(errOut, "Table 'pipes' is read only (CometQL error 10)") {
		t.Fatalf("error: code %d: %s", code, errOut)
	}
	_, errOut, code = cli(t, bin, ts, "root", "wrong", nil, "SELECT 1")
	if code != 1 || !strings.Contains(errOut, "1045") || !strings.Contains(errOut, "Access denied for user 'root'") {
		t.Fatalf("wrong password: code %d: %s", code, errOut)
	}
	// The CLI asking for caching_sha2_password on a server that proposes
	// mysql_native_password is switched to it.
	out, errOut, code = cli(t, bin, ts, "root", rootPassword, []string{"--default-auth=caching_sha2_password"}, "SELECT 'in' AS x")
	if code != 0 || out != "x\nin\n" {
		t.Fatalf("caching_sha2 on a native server: code %d %q %s", code, out, errOut)
	}
	// On a server that proposes caching_sha2_password, the CLI uses it.
	// Its full authentication over plain TCP sends the password in clear,
	// which is refused (as MySQL does: 1045); once a client has
	// authenticated with RSA (go-sql-driver here), the CLI's fast
	// authentication succeeds.
	sha2 := startServer(t, mysqlproto.Config{AuthPlugin: "caching_sha2_password"})
	query(t, sha2.conn(t, "root", rootPassword, "allowNativePasswords=false"), "SELECT 1")
	for _, extra := range [][]string{nil, {"--default-auth=caching_sha2_password"}} {
		out, errOut, code = cli(t, bin, sha2, "root", rootPassword, extra, "SELECT 'in' AS x")
		if code != 0 || out != "x\nin\n" {
			t.Fatalf("%v on a caching_sha2 server: code %d %q %s", extra, code, out, errOut)
		}
	}
	_, errOut, code = cli(t, bin, sha2, "root", "wrong", nil, "SELECT 1")
	if code != 1 || !strings.Contains(errOut, "ERROR 1045 (28000)") {
		t.Fatalf("wrong password on a caching_sha2 server: code %d: %s", code, errOut)
	}
}
