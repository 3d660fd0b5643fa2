package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// testPKI is a CA and a server certificate for 127.0.0.1 and localhost
// signed by it, as PEM files.
type testPKI struct {
	pool              *x509.CertPool
	caFile            string
	certFile, keyFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cometql e2e test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{
		pool:     x509.NewCertPool(),
		caFile:   filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "cert.pem"),
		keyFile:  filepath.Join(dir, "key.pem"),
	}
	p.pool.AddCert(ca)
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, "CERTIFICATE", caDER)
	write(p.certFile, "CERTIFICATE", der)
	write(p.keyFile, "EC PRIVATE KEY", keyDER)
	return p
}

// TestFaultTLS: with --tls-cert/--tls-key both ports speak TLS: wss for
// browsers (gorilla, verifying the test CA), MySQL TLS for go-sql-driver
// (tls=custom with the test CA) and for the mariadb CLI (--ssl); a message
// published over MySQL TLS reaches the wss browser. CLIENT_SSL is
// advertised with a certificate and not without one (SPEC 2.1).
func TestFaultTLS(t *testing.T) {
	pki := newTestPKI(t)

	// Without a certificate: no CLIENT_SSL, and a TLS client is refused.
	plain := startServer(t, "")
	ok, detail, greeting := qlGreeting(plain.qlAddr)
	if !ok {
		t.Fatalf("no greeting: %s", detail)
	}
	if caps, err := greetingCapabilities(greeting); err != nil {
		t.Fatal(err)
	} else if caps&clientSSL != 0 {
		t.Errorf("CLIENT_SSL advertised without a certificate (capabilities %#x)", caps)
	}
	if err := mysql.RegisterTLSConfig("e2e-ca", &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	noTLS, err := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s)/CometQL_v1?tls=e2e-ca&timeout=5s", testPassword, plain.qlAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer noTLS.Close()
	if err := noTLS.Ping(); err == nil {
		t.Errorf("a client requiring TLS connected to a server without a certificate")
	}
	plain.stop()

	s := startServer(t, "", "--tls-cert", pki.certFile, "--tls-key", pki.keyFile)
	ok, detail, greeting = qlGreeting(s.qlAddr)
	if !ok {
		t.Fatalf("no greeting: %s", detail)
	}
	if caps, err := greetingCapabilities(greeting); err != nil {
		t.Fatal(err)
	} else if caps&clientSSL == 0 {
		t.Errorf("CLIENT_SSL not advertised with a certificate (capabilities %#x)", caps)
	}

	// go-sql-driver over TLS, verifying the chain; the verification
	// callback proves a TLS handshake happened.
	var verified atomic.Int32
	if err := mysql.RegisterTLSConfig("e2e-ca-verify", &tls.Config{
		RootCAs:    pki.pool,
		ServerName: "127.0.0.1",
		VerifyConnection: func(cs tls.ConnectionState) error {
			verified.Add(1)
			return nil
		},
	}); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", fmt.Sprintf("root:%s@tcp(%s)/CometQL_v1?tls=e2e-ca-verify&timeout=5s", testPassword, s.qlAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	checkOne(t, db, "SELECT @@have_ssl", "YES")
	if verified.Load() == 0 {
		t.Fatal("go-sql-driver connected without a TLS handshake")
	}

	// wss with gorilla, verifying the chain.
	var frames = make(chan *wsFrame, 10)
	sub, err := dialSub(s.httpAddr, &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1"}, func(f *wsFrame) { frames <- f })
	if err != nil {
		t.Fatalf("wss: %v", err)
	}
	defer sub.close()
	if err := sub.subscribe("tls_pipe"); err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, db, map[string]int{"tls_pipe": 1})
	mustExec(t, db, "INSERT INTO pipes_messages (name, event, message) VALUES ('tls_pipe', 'ev', 'over TLS both ways')")
	select {
	case f := <-frames:
		if f.text() != "over TLS both ways" || f.Event != "ev" {
			t.Errorf("wss frame %+v", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no message over wss")
	}

	// Plain HTTP on the TLS port gets no page; HTTPS does.
	if code, err := httpGet("http://" + s.httpAddr + "/info"); err == nil && code == http.StatusOK {
		t.Errorf("plain HTTP served on the TLS port")
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}}}
	if resp, err := hc.Get("https://" + s.httpAddr + "/info"); err != nil {
		t.Errorf("https /info: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("https /info: %s", resp.Status)
		}
	}

	// The mariadb CLI with --ssl (and the test CA).
	cli, err := exec.LookPath("mariadb")
	if err != nil {
		if os.Getenv("COMETQL_REQUIRE_CLIENTS") != "" {
			t.Fatalf("COMETQL_REQUIRE_CLIENTS is set but the mariadb CLI is missing: %v", err)
		}
		t.Skipf("mariadb CLI not installed (apt-get install mariadb-client): %v", err)
	}
	host, port, _ := net.SplitHostPort(s.qlAddr)
	out, err := exec.Command(cli, "-h", host, "-P", port, "-u", "root", "-p"+testPassword,
		"--ssl", "--ssl-ca", pki.caFile, "--connect-timeout", "10", "CometQL_v1",
		"-e", "status; SELECT message FROM pipes_messages WHERE name = 'tls_pipe'").CombinedOutput()
	if err != nil {
		t.Fatalf("mariadb --ssl: %v\n%s", err, out)
	}
	var cipher string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "SSL:") {
			cipher = strings.TrimSpace(line)
		}
	}
	if !strings.Contains(cipher, "Cipher in use") {
		t.Errorf("mariadb --ssl did not use TLS (status says %q):\n%s", cipher, out)
	}
	t.Logf("mariadb: %s", cipher)
}
