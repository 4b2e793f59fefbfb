package sshd

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func dial(t *testing.T, s *Server, edit func(*ssh.ClientConfig)) (*ssh.Client, error) {
	t.Helper()
	cfg, err := s.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(cfg)
	}
	return ssh.Dial("tcp", s.Addr(), cfg)
}

func mustSFTP(t *testing.T, s *Server) (*ssh.Client, *sftp.Client) {
	t.Helper()
	c, err := dial(t, s, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr(), err)
	}
	sc, err := sftp.NewClient(c)
	if err != nil {
		c.Close()
		t.Fatalf("sftp subsystem: %v", err)
	}
	return c, sc
}

func TestSFTPWriteRead(t *testing.T) {
	s := Start(t, Options{})
	c, sc := mustSFTP(t, s)
	defer c.Close()
	defer sc.Close()

	want := make([]byte, 1<<20+17)
	rand.Read(want)
	p := filepath.Join(s.Root(), "dir", "file.bin")
	if err := sc.MkdirAll(filepath.Dir(p)); err != nil {
		t.Fatal(err)
	}
	f, err := sc.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := sc.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes, differ from the %d written", len(got), len(want))
	}
	// The server side is this machine: the file is really under Root.
	onDisk, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(onDisk, want) {
		t.Fatalf("file on the server side: %d bytes, err %v", len(onDisk), err)
	}
	if s.User() == "" || !strings.HasSuffix(s.Addr(), ":"+itoa(s.Port())) {
		t.Fatalf("accessors: user %q addr %q port %d", s.User(), s.Addr(), s.Port())
	}
	if got := s.URL("/x"); got != "sftp://"+s.User()+"@"+s.Addr()+"/x" {
		t.Fatalf("URL = %q", got)
	}
}

func TestUnknownHostKeyRefused(t *testing.T) {
	s := Start(t, Options{})
	other := Start(t, Options{})
	// Trust the other server's keys under this server's address.
	kh := knownHostsLines(s.Addr(), other.HostKeys())
	if err := os.WriteFile(s.KnownHostsPath(), []byte(kh), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := dial(t, s, nil)
	if err == nil {
		c.Close()
		t.Fatal("handshake with a changed host key succeeded")
	}
	if !strings.Contains(err.Error(), "key mismatch") {
		t.Fatalf("want a key mismatch, got %v", err)
	}
}

func TestHostKeyTypes(t *testing.T) {
	// ed25519 is always there; naming it again must not add a second key.
	s := Start(t, Options{HostKeyTypes: []string{"rsa", "ecdsa", "ed25519"}})
	kh, err := os.ReadFile(s.KnownHostsPath())
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(kh), "[127.0.0.1]:"+itoa(s.Port())+" "); n != 3 {
		t.Fatalf("known_hosts has %d lines for the server, want 3:\n%s", n, kh)
	}
	for _, tc := range []struct{ name, alg string }{
		{"ed25519", ssh.KeyAlgoED25519},
		{"rsa-sha2-512", ssh.KeyAlgoRSASHA512},
		{"ecdsa-p256", ssh.KeyAlgoECDSA256},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen string
			c, err := dial(t, s, func(cfg *ssh.ClientConfig) {
				cfg.HostKeyAlgorithms = []string{tc.alg}
				check := cfg.HostKeyCallback
				cfg.HostKeyCallback = func(h string, a net.Addr, k ssh.PublicKey) error {
					seen = k.Type()
					return check(h, a, k)
				}
			})
			if err != nil {
				t.Fatalf("dial with host key algorithm %s: %v", tc.alg, err)
			}
			c.Close()
			if seen == "" {
				t.Fatal("host key callback not called")
			}
		})
	}
}

func TestEncryptedClientKey(t *testing.T) {
	s := Start(t, Options{EncryptedClientKey: true})
	pem, err := os.ReadFile(s.ClientKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	var missing *ssh.PassphraseMissingError
	if _, err := ssh.ParsePrivateKey(pem); !errors.As(err, &missing) {
		t.Fatalf("parse without passphrase: want PassphraseMissingError, got %v", err)
	}
	if s.ClientKeyPassphrase() != DefaultPassphrase {
		t.Fatalf("passphrase %q", s.ClientKeyPassphrase())
	}
	c, err := dial(t, s, nil)
	if err != nil {
		t.Fatalf("dial with the decrypted key: %v", err)
	}
	c.Close()
}

func TestExtraConfig(t *testing.T) {
	s := Start(t, Options{
		DefaultLimits: true,
		ExtraConfig:   []string{"Ciphers aes128-gcm@openssh.com", "Match User nobody", "  MaxSessions 1"},
	})
	cfg, err := os.ReadFile(s.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(cfg), "MaxStartups") {
		t.Fatalf("DefaultLimits set but config raises limits:\n%s", cfg)
	}
	if !strings.HasSuffix(strings.TrimSpace(string(cfg)), "MaxSessions 1") {
		t.Fatalf("Match block not written last:\n%s", cfg)
	}
	for _, tc := range []struct {
		name   string
		cipher string
		ok     bool
	}{
		{"allowed cipher", "aes128-gcm@openssh.com", true},
		{"refused cipher", "chacha20-poly1305@openssh.com", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := dial(t, s, func(cfg *ssh.ClientConfig) { cfg.Ciphers = []string{tc.cipher} })
			if c != nil {
				c.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("cipher %s: err %v, want success %v", tc.cipher, err, tc.ok)
			}
		})
	}
}

func TestRestartKeepsPortAndHostKey(t *testing.T) {
	s := Start(t, Options{})
	c, sc := mustSFTP(t, s)
	if err := sc.Mkdir(filepath.Join(s.Root(), "before")); err != nil {
		t.Fatal(err)
	}
	sc.Close()
	c.Close()

	pid := s.PID()
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if s.PID() == pid || s.PID() == 0 {
		t.Fatalf("pid %d after restart, was %d", s.PID(), pid)
	}
	// The same known_hosts file still verifies the server.
	c, sc = mustSFTP(t, s)
	defer c.Close()
	defer sc.Close()
	if _, err := sc.Stat(filepath.Join(s.Root(), "before")); err != nil {
		t.Fatalf("directory made before the restart: %v", err)
	}
}

func TestKillDropsSessions(t *testing.T) {
	s := Start(t, Options{})
	c, sc := mustSFTP(t, s)
	defer c.Close()
	defer sc.Close()
	if _, err := sc.Getwd(); err != nil {
		t.Fatal(err)
	}
	sessions := descendants(s.PID())
	if len(sessions) == 0 {
		t.Fatal("no session processes under sshd while a client is connected")
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Fatal("Running after Kill")
	}
	// The session is gone: the next request fails instead of hanging.
	errc := make(chan error, 1)
	go func() {
		_, err := sc.Stat(s.Root())
		errc <- err
	}()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("sftp request succeeded after Kill")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sftp request still blocked 10s after Kill")
	}
	for _, p := range sessions {
		if alive(p) {
			t.Errorf("session process %d still alive after Kill", p)
		}
	}
	if conn, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		conn.Close()
		t.Fatal("port still accepts after Kill")
	}
	// And it comes back.
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	c2, sc2 := mustSFTP(t, s)
	sc2.Close()
	c2.Close()
}

// alive reports whether p exists and is not a zombie.
func alive(p int) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile("/proc/" + itoa(p) + "/stat")
		if err != nil {
			return false
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && b[i+2] == 'Z' {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func itoa(n int) string { return strconv.Itoa(n) }

// recorder stands in for a test to see whether Start fails or skips it.
type recorder struct {
	testing.TB
	how string
	msg string
}

type stop struct{}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.how, r.msg = "fatal", fmt.Sprintf(format, args...)
	panic(stop{})
}
func (r *recorder) Skipf(format string, args ...any) {
	r.how, r.msg = "skip", fmt.Sprintf(format, args...)
	panic(stop{})
}

func TestMissingSSHD(t *testing.T) {
	saved := binary
	binary = filepath.Join(t.TempDir(), "sshd")
	defer func() { binary = saved }()
	for _, tc := range []struct {
		name, ci, want string
	}{
		{"CI fails", "true", "fatal"},
		{"elsewhere skips", "", "skip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recorder{TB: t}
			func() {
				defer func() {
					if v := recover(); v != nil {
						if _, ok := v.(stop); !ok {
							panic(v)
						}
					}
				}()
				Start(r, Options{})
			}()
			if r.how != tc.want || !strings.Contains(r.msg, "openssh-server") {
				t.Fatalf("Start with sshd missing and CI=%q: %s %q; want %s with the install hint", tc.ci, r.how, r.msg, tc.want)
			}
		})
	}
}
