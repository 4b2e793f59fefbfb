package sftp

import (
	"crypto/ed25519"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ferrysync/ferry/backends"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// startAgent serves an in-memory ssh-agent holding key on a unix socket and
// points SSH_AUTH_SOCK at it.
func startAgent(t *testing.T, key ed25519.PrivateKey) {
	if key == nil {
		startAgentWith(t)
		return
	}
	startAgentWith(t, key)
}

// startAgentWith is startAgent with keys, offered in this order.
func startAgentWith(t *testing.T, keys ...ed25519.PrivateKey) {
	keyring := agent.NewKeyring()
	for _, key := range keys {
		if err := keyring.Add(agent.AddedKey{PrivateKey: key}); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				agent.ServeAgent(keyring, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	t.Setenv("SSH_AUTH_SOCK", sock)
}

func TestAgentAuth(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	spub, _ := ssh.NewPublicKey(pub)
	srv := startServer(t, serverOpts{clientKey: spub})
	t.Setenv("HOME", t.TempDir()) // no default keys in ~/.ssh
	cfg := Config{Host: "127.0.0.1", User: "tester", Root: srv.dir, SSHConfigFile: "none",
		KnownHostsFile: writeKnownHosts(t, srv.addr, srv.hostKeys[0].PublicKey())}
	_, port, _ := strings.Cut(srv.addr, ":")
	cfg.Port = atoi(t, port)

	t.Run("key only in the agent", func(t *testing.T) {
		startAgent(t, priv)
		mustUpload(t, dial(t, cfg), "f", newSource(10, 1))
	})
	t.Run("encrypted key file left to the agent", func(t *testing.T) {
		startAgent(t, priv)
		c := cfg
		c.IdentityFiles = []string{newClientKey(t, "secret").file} // another, encrypted key
		dial(t, c)
	})
	t.Run("agent without the key names the encrypted file", func(t *testing.T) {
		startAgent(t, nil)
		c := cfg
		enc := newClientKey(t, "secret")
		c.IdentityFiles = []string{enc.file}
		err := dialErr(t, c)
		wantErr(t, err, backends.ErrAuth)
		if !strings.Contains(err.Error(), enc.file) || !strings.Contains(err.Error(), "encrypted") {
			t.Errorf("error %q does not say the key %s is encrypted", err, enc.file)
		}
	})
	t.Run("no agent and no key", func(t *testing.T) {
		t.Setenv("SSH_AUTH_SOCK", "")
		err := dialErr(t, cfg)
		wantErr(t, err, backends.ErrAuth)
		if !strings.Contains(err.Error(), "ssh-agent") {
			t.Errorf("error %q does not say how to give a key", err)
		}
	})
}

func atoi(t *testing.T, s string) int {
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(r-'0')
	}
	return n
}

// TestIdentitiesOnly: an agent holding many keys uses up the server's six
// authentication attempts before it offers the right one; with
// IdentitiesOnly in the SSH config the agent offers only the key of the
// identity file (here encrypted, so the agent must sign for it), as in
// OpenSSH.
func TestIdentitiesOnly(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	spub, _ := ssh.NewPublicKey(pub)
	var keys []ed25519.PrivateKey
	for range 7 {
		_, other, _ := ed25519.GenerateKey(nil)
		keys = append(keys, other)
	}
	startAgentWith(t, append(keys, priv)...)
	blk, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	id := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(id, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, serverOpts{clientKey: spub})
	host, port, _ := strings.Cut(srv.addr, ":")
	cfg := Config{Host: host, Port: atoi(t, port), User: "tester", Root: srv.dir, IdentityFiles: []string{id},
		KnownHostsFile: writeKnownHosts(t, srv.addr, srv.hostKeys[0].PublicKey())}

	for _, tc := range []struct {
		only        string
		minTries    int32
		maxTries    int32
		description string
	}{
		{"no", 8, 100, "every agent key, the right one last"},
		{"yes", 1, 1, "only the identity file's key"},
	} {
		cfg.SSHConfigFile = writeSSHConfig(t, "Host "+host+"\n  IdentitiesOnly "+tc.only+"\n")
		before := srv.authAttempts.Load()
		b := dial(t, cfg)
		b.Close()
		// OpenSSH's sshd (MaxAuthTries 6) would have cut the first off
		// after six; this server counts.
		if n := srv.authAttempts.Load() - before; n < tc.minTries || n > tc.maxTries {
			t.Errorf("IdentitiesOnly %s: %d keys offered, want %s (%d to %d)", tc.only, n, tc.description, tc.minTries, tc.maxTries)
		}
	}
}

func writeSSHConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
