package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/twinmail/twinmail/store/storetest"
)

// testCert is a self-signed certificate for 127.0.0.1 and localhost, written as PEM files.
type testCert struct {
	CertFile, KeyFile string
	Pool              *x509.CertPool // trusts only this certificate
}

func newTestCert(tb testing.TB) *testCert {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "twinmail test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("parse certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("marshal key: %v", err)
	}
	dir := tb.TempDir()
	tc := &testCert{
		CertFile: filepath.Join(dir, "cert.pem"),
		KeyFile:  filepath.Join(dir, "key.pem"),
		Pool:     x509.NewCertPool(),
	}
	tc.Pool.AddCert(cert)
	for file, block := range map[string]*pem.Block{
		tc.CertFile: {Type: "CERTIFICATE", Bytes: der},
		tc.KeyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			tb.Fatalf("write %s: %v", file, err)
		}
	}
	return tc
}

// clientConfig is a client TLS configuration that trusts only the test certificate.
func (tc *testCert) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: tc.Pool, MinVersion: tls.VersionTLS12}
}

// startServeArgs starts a server with the caller's flags (startServer passes --insecure-auth):
// `twinmail serve --db dsn --imap <free port> --lmtp <free port> args...`. It waits for the
// greeting on the --imap port and stops the server with SIGTERM when the test ends.
func startServeArgs(tb testing.TB, dsn string, args ...string) *server {
	tb.Helper()
	for attempt := 1; ; attempt++ {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(tb))
		lmtpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(tb))
		all := append([]string{"serve", "--db", dsn, "--imap", addr, "--lmtp", lmtpAddr}, args...)
		p := startProc(tb, "twinmail serve", all...)
		err := waitGreeting(addr, p, 60*time.Second)
		if err == nil {
			s := &server{proc: p, Addr: addr, LMTPAddr: lmtpAddr, DSN: dsn}
			tb.Cleanup(func() {
				s.stop(tb, syscall.SIGTERM)
				if tb.Failed() {
					tb.Logf("twinmail serve output:\n%s", p.output)
				}
			})
			return s
		}
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
		if attempt < 3 && strings.Contains(p.output.String(), "address already in use") {
			continue
		}
		tb.Fatalf("twinmail serve %s: %v; output:\n%s", strings.Join(all, " "), err, p.output)
	}
}

// newServerArgs gives the test a fresh database with the named accounts and a `twinmail
// serve` on it started with args (see startServeArgs).
func newServerArgs(tb testing.TB, users []string, args ...string) *server {
	tb.Helper()
	dsn := storetest.DSN(tb)
	for _, u := range users {
		addUser(tb, dsn, u, pw(u))
	}
	return startServeArgs(tb, dsn, args...)
}

func TestTLS(t *testing.T) {
	t.Parallel()
	cert := newTestCert(t)
	imapsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := newServerArgs(t, []string{"alice"}, "--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile, "--imaps", imapsAddr)

	t.Run("plaintext login refused", func(t *testing.T) {
		rc := dialRaw(t, s.Addr)
		caps := capTokens(rc.mustOK("c1", "CAPABILITY"))
		for _, want := range []string{"STARTTLS", "LOGINDISABLED"} {
			if !slices.Contains(caps, want) {
				t.Errorf("CAPABILITY before STARTTLS = %q, missing %s", caps, want)
			}
		}
		if slices.Contains(caps, "AUTH=PLAIN") {
			t.Errorf("CAPABILITY before STARTTLS = %q, offers AUTH=PLAIN", caps)
		}
		if _, final := rc.cmd("c2", fmt.Sprintf("LOGIN alice %q", pw("alice"))); !strings.HasPrefix(final, "NO [PRIVACYREQUIRED]") {
			t.Errorf("plaintext LOGIN -> %q, want NO [PRIVACYREQUIRED]", final)
		}
		plain := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00" + pw("alice")))
		if _, final := rc.cmd("c3", "AUTHENTICATE PLAIN "+plain); !strings.HasPrefix(final, "NO") {
			t.Errorf("plaintext AUTHENTICATE PLAIN -> %q, want NO", final)
		}
		if _, final := rc.cmd("c4", "SELECT INBOX"); strings.HasPrefix(final, "OK") {
			t.Errorf("SELECT after the refused logins -> %q, want NO or BAD", final)
		}
	})

	t.Run("STARTTLS", func(t *testing.T) {
		c, err := imapclient.DialStartTLS(s.Addr, &imapclient.Options{TLSConfig: cert.clientConfig()})
		if err != nil {
			t.Fatalf("DialStartTLS: %v", err)
		}
		defer c.Close()
		caps, err := c.Capability().Wait()
		if err != nil {
			t.Fatalf("CAPABILITY after STARTTLS: %v", err)
		}
		if caps.Has(imap.CapLoginDisabled) || caps.Has(imap.CapStartTLS) || !caps.Has(imap.AuthCap("PLAIN")) {
			t.Errorf("CAPABILITY after STARTTLS = %v, want AUTH=PLAIN and neither LOGINDISABLED nor STARTTLS", caps)
		}
		if err := c.Login("alice", pw("alice")).Wait(); err != nil {
			t.Fatalf("LOGIN after STARTTLS: %v", err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Errorf("SELECT INBOX after STARTTLS: %v", err)
		}
		if err := c.Logout().Wait(); err != nil {
			t.Errorf("LOGOUT: %v", err)
		}
	})

	t.Run("implicit TLS", func(t *testing.T) {
		c, err := imapclient.DialTLS(imapsAddr, &imapclient.Options{TLSConfig: cert.clientConfig()})
		if err != nil {
			t.Fatalf("DialTLS: %v", err)
		}
		defer c.Close()
		if err := c.WaitGreeting(); err != nil {
			t.Fatalf("greeting over IMAPS: %v", err)
		}
		if caps := c.Caps(); caps.Has(imap.CapLoginDisabled) || caps.Has(imap.CapStartTLS) {
			t.Errorf("CAPABILITY over IMAPS = %v, want neither LOGINDISABLED nor STARTTLS", caps)
		}
		if err := c.Login("alice", pw("alice")).Wait(); err != nil {
			t.Fatalf("LOGIN over IMAPS: %v", err)
		}
		msg := simpleMsg("over tls", "bob@example.org", "sent over implicit TLS", time.Now())
		cmd := c.Append("INBOX", int64(len(msg)), nil)
		cmd.Write(msg)
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatalf("APPEND over IMAPS: %v", err)
		}
		st, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || st.NumMessages == nil || *st.NumMessages != 1 {
			t.Errorf("STATUS INBOX over IMAPS = %v, %v; want 1 message", deref(st.NumMessages), err)
		}
		if err := c.Logout().Wait(); err != nil {
			t.Errorf("LOGOUT: %v", err)
		}
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		// A client that does not trust the test certificate refuses it: the server really
		// presents the certificate from --tls-cert.
		conn, err := tls.Dial("tcp", imapsAddr, &tls.Config{RootCAs: x509.NewCertPool()})
		if err == nil {
			conn.Close()
			t.Fatalf("TLS handshake trusting nothing succeeded")
		}
	})
}

func TestTLSInsecureAuth(t *testing.T) {
	t.Parallel()
	cert := newTestCert(t)
	s := newServerArgs(t, []string{"alice"}, "--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile, "--insecure-auth")
	rc := dialRaw(t, s.Addr)
	caps := capTokens(rc.mustOK("c1", "CAPABILITY"))
	if slices.Contains(caps, "LOGINDISABLED") || !slices.Contains(caps, "STARTTLS") || !slices.Contains(caps, "AUTH=PLAIN") {
		t.Errorf("CAPABILITY with --insecure-auth = %q, want STARTTLS and AUTH=PLAIN, no LOGINDISABLED", caps)
	}
	rc.mustOK("c2", fmt.Sprintf("LOGIN alice %q", pw("alice")))
	rc.mustOK("c3", "SELECT INBOX")
}
