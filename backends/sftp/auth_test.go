package sftp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"golang.org/x/crypto/ssh"
)

func dialErr(t *testing.T, cfg Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Dial(ctx, cfg)
	if err == nil {
		b.Close()
		t.Fatal("Dial succeeded, want an error")
	}
	return err
}

func TestUnknownHostKeyRefused(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg := e.config()
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "empty_known_hosts")
	os.WriteFile(cfg.KnownHostsFile, nil, 0o600)
	err := dialErr(t, cfg)
	wantErr(t, err, backends.ErrAuth)
	if !backends.IsPermanent(err) {
		t.Errorf("unknown host key should be permanent: %v", err)
	}
	fp := ssh.FingerprintSHA256(e.srv.hostKeys[0].PublicKey())
	for _, want := range []string{fp, cfg.KnownHostsFile, "unknown"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if n := e.srv.authAttempts.Load(); n != 0 {
		t.Errorf("client offered %d keys to an unverified server, want none", n)
	}
	if ents, _ := os.ReadDir(e.root); len(ents) != 0 {
		t.Errorf("root holds %v", ents)
	}
	// A missing known_hosts file is the same refusal, not a crash.
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "absent")
	wantErr(t, dialErr(t, cfg), backends.ErrAuth)
}

func TestChangedHostKeyRefused(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg := e.config()
	other := newHostKey(t, "ed25519").PublicKey()
	cfg.KnownHostsFile = writeKnownHosts(t, e.srv.addr, other)
	cfg.AcceptNewHostKey = true // never overrides a changed key
	err := dialErr(t, cfg)
	wantErr(t, err, backends.ErrAuth)
	for _, want := range []string{"CHANGED", ssh.FingerprintSHA256(e.srv.hostKeys[0].PublicKey()), cfg.KnownHostsFile, "line 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if n := e.srv.authAttempts.Load(); n != 0 {
		t.Errorf("client offered %d keys to a server with a changed key", n)
	}
	if data, _ := os.ReadFile(cfg.KnownHostsFile); strings.Count(string(data), "\n") != 1 {
		t.Errorf("known_hosts was changed:\n%s", data)
	}
}

func TestTrustOnFirstUseRecordsKey(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg := e.config()
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "ssh", "known_hosts")
	cfg.AcceptNewHostKey = true
	dial(t, cfg).Close()
	data, err := os.ReadFile(cfg.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(e.srv.addr, ":")
	if !strings.HasPrefix(string(data), fmt.Sprintf("[%s]:%s ssh-ed25519 ", host, port)) {
		t.Errorf("known_hosts holds %q", data)
	}
	cfg.AcceptNewHostKey = false
	dial(t, cfg) // the recorded key now verifies
}

func TestHostWithSeveralKeyTypes(t *testing.T) {
	e := newEnv(t, serverOpts{hostKeyTypes: []string{"ecdsa", "rsa", "ed25519"}})
	cfg := e.config()
	// Only the ed25519 key is known; the client would otherwise prefer
	// ecdsa and see a mismatch.
	cfg.KnownHostsFile = writeKnownHosts(t, e.srv.addr, e.srv.hostKeys[2].PublicKey())
	b := dial(t, cfg)
	mustUpload(t, b, "f", newSource(100, 1))
}

func TestSSHConfigAlias(t *testing.T) {
	e := newEnv(t, serverOpts{})
	host, port, _ := strings.Cut(e.srv.addr, ":")
	sc := filepath.Join(t.TempDir(), "config")
	os.WriteFile(sc, []byte(fmt.Sprintf(`Host other
  HostName 192.0.2.1

Host backup-box
  HostName %s
  Port %s
  User alias-user
  IdentityFile %s
  UserKnownHostsFile %s
`, host, port, e.key.file, e.knownHosts)), 0o600)
	b := dial(t, Config{Host: "backup-box", SSHConfigFile: sc, Root: e.root})
	mustUpload(t, b, "f", newSource(100, 1))
	if _, ok := e.srv.users.Load("alias-user"); !ok {
		t.Error("server did not see the User from the SSH config")
	}
	// Explicit settings win over the SSH config.
	cfg := e.config()
	cfg.Host, cfg.Port, cfg.SSHConfigFile, cfg.User = "backup-box", 0, sc, "explicit"
	dial(t, cfg)
	if _, ok := e.srv.users.Load("explicit"); !ok {
		t.Error("explicit User lost to the SSH config")
	}
}

func TestEncryptedKey(t *testing.T) {
	e := newEnv(t, serverOpts{})
	key := newClientKey(t, "sesame")
	srv := startServer(t, serverOpts{clientKey: key.pub})
	cfg := e.config()
	host, port, _ := strings.Cut(srv.addr, ":")
	fmt.Sscan(port, &cfg.Port)
	cfg.Host = host
	cfg.Root = srv.dir
	cfg.KnownHostsFile = writeKnownHosts(t, srv.addr, srv.hostKeys[0].PublicKey())
	cfg.IdentityFiles = []string{key.file}
	err := dialErr(t, cfg)
	wantErr(t, err, backends.ErrAuth)
	for _, want := range []string{key.file, "encrypted", "FERRY_SSH_PASSPHRASE", "ssh-agent"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Decrypting costs seconds under -race (bcrypt KDF), so only the right
	// passphrase is tried.
	cfg.PassphraseEnv = "FERRY_TEST_PASSPHRASE"
	t.Setenv("FERRY_TEST_PASSPHRASE", "sesame")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial with the passphrase: %v", err)
	}
	b.Close()
}

func TestRefusedKeyIsAuthError(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg := e.config()
	cfg.IdentityFiles = []string{newClientKey(t, "").file}
	err := dialErr(t, cfg)
	wantErr(t, err, backends.ErrAuth)
}

func TestUnreachable(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg := e.config()
	e.srv.close()
	err := dialErr(t, cfg)
	wantErr(t, err, backends.ErrUnreachable)
	if backends.IsPermanent(err) {
		t.Errorf("unreachable should be retryable: %v", err)
	}
}

// TestLoadCerts: a certificate goes before the key it certifies, from
// FILE-cert.pub beside an identity or from CertificateFile; a named
// certificate that is missing or no certificate is an error, a guessed one
// is skipped.
func TestLoadCerts(t *testing.T) {
	dir := t.TempDir()
	newKey := func(name string) (string, ssh.Signer) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		blk, err := ssh.MarshalPrivateKey(priv, "")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(blk), 0o600); err != nil {
			t.Fatal(err)
		}
		return p, s
	}
	idA, a := newKey("a")
	idB, b := newKey("b")
	_, ca := newKey("ca")
	certFor := func(s ssh.Signer) []byte {
		c := &ssh.Certificate{Key: s.PublicKey(), CertType: ssh.UserCert, ValidPrincipals: []string{"u"}, ValidBefore: ssh.CertTimeInfinity}
		if err := c.SignCert(rand.Reader, ca); err != nil {
			t.Fatal(err)
		}
		return ssh.MarshalAuthorizedKey(c)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("a-cert.pub", certFor(a))
	named := write("b.crt", certFor(b))
	kinds := func(r *resolved) string {
		k, err := loadKeys(r)
		if err != nil {
			return "error: " + err.Error()
		}
		var out []string
		for _, s := range k.signers {
			out = append(out, s.PublicKey().Type())
		}
		return strings.Join(out, " ")
	}
	r := &resolved{identities: []string{idA, idB}, explicitID: true, certFiles: []string{named}}
	if got, want := kinds(r), "ssh-ed25519-cert-v01@openssh.com ssh-ed25519 ssh-ed25519-cert-v01@openssh.com ssh-ed25519"; got != want {
		t.Errorf("signers = %s, want %s", got, want)
	}
	write("b-cert.pub", []byte("not a certificate\n"))
	r = &resolved{identities: []string{idB}, explicitID: true}
	if got, want := kinds(r), "ssh-ed25519"; got != want {
		t.Errorf("with a broken guessed certificate: signers = %s, want %s", got, want)
	}
	for _, f := range []string{filepath.Join(dir, "missing.pub"), idA + ".pub-not-there", write("plain.pub", ssh.MarshalAuthorizedKey(a.PublicKey()))} {
		r = &resolved{identities: []string{idA}, explicitID: true, certFiles: []string{f}}
		if got := kinds(r); !strings.HasPrefix(got, "error: ") {
			t.Errorf("CertificateFile %s: signers %s, want an error", filepath.Base(f), got)
		}
	}
}
