package sftp

import (
	"crypto/ed25519"
	"net"
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
	keyring := agent.NewKeyring()
	if key != nil {
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
