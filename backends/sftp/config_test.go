package sftp

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// TestSSHConfigMatchAndInclude: Match lines are judged for the host being
// reached, as OpenSSH judges them (host against the HostName set so far,
// user against the user given, exec by running it, "!" negating), and
// those ferry cannot judge apply to no host and are noted, where the config
// parser alone refused the whole file or misread combined criteria.
// Include reads files relative to ~/.ssh, with the same judgement.
func TestSSHConfigMatchAndInclude(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	if err := os.MkdirAll(filepath.Join(home, ".ssh", "conf.d"), 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(p, text string) {
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(home, "exec-ran")
	write(filepath.Join(home, ".ssh", "conf.d", "work.conf"), `Host included
  Port 2201
Match user deploy
  Port 2299
`)
	cfg := filepath.Join(home, ".ssh", "config")
	write(cfg, `Include conf.d/*.conf
Host web
  HostName web1.prod.example
Match host *.prod.example
  Port 2207
Match host combined exec "false"
  Port 2202
Match host nomatch exec "touch `+marker+`"
  Port 2211
Match originalhost alpha,beta !exec "false"
  Port 2204
Match host gamma
  Port 2205
Match canonical
  Port 2208
Match exec "test %n = execme"
  Port 2209
Match localuser `+me.Username+` originalhost mine
  Port 2212
Match final originalhost fin
  Port 2213
Match all
  Port 2206
`)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for _, tc := range []struct {
		host, user string
		want       int
	}{
		{"included", "me", 2201}, {"d", "deploy", 2299}, {"web", "me", 2207}, {"combined", "me", 2206},
		{"alpha", "me", 2204}, {"beta", "me", 2204}, {"gamma", "me", 2205}, {"execme", "me", 2209},
		{"mine", "me", 2212}, {"fin", "me", 2213}, {"other", "me", 2206},
	} {
		r, err := Config{Host: tc.host, User: tc.user, Logger: log}.resolve()
		if err != nil {
			t.Fatalf("%s: %v", tc.host, err)
		}
		if r.Port != tc.want {
			t.Errorf("%s: port %d, want %d", tc.host, r.Port, tc.want)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("an exec ran after a criterion before it had failed")
	}
	if want := "config line 14: ferry cannot judge `Match canonical`"; !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
}

// TestRootErrors: a target root that is a file, or cannot be created, is
// refused with what is wrong, and not as an unreachable server (the
// connection is closed after the error is read, not before).
func TestRootErrors(t *testing.T) {
	e := newEnv(t, serverOpts{})
	file := filepath.Join(e.root, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for root, want := range map[string]string{
		file:                 "not a directory",
		file + "/below/that": "not a directory",
		"/proc/ferry-nope/x": "creating it", // no folder can be made in /proc
	} {
		c := e.config()
		c.Root = root
		err := dialErr(t, c)
		if errors.Is(err, backends.ErrUnreachable) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), root) {
			t.Errorf("root %s: %v, want an error naming it and %q, not an unreachable server", root, err, want)
		}
	}
}

// TestHostKeyAlias: with HostKeyAlias, the host key is looked up (and
// trusted on first use) under the alias, not the address dialled.
func TestHostKeyAlias(t *testing.T) {
	e := newEnv(t, serverOpts{})
	host, _, _ := strings.Cut(e.srv.addr, ":")
	c := e.config()
	c.KnownHostsFile = writeKnownHosts(t, "backup-box:22", e.srv.hostKeys[0].PublicKey())
	if err := dialErr(t, c); !errors.Is(err, backends.ErrAuth) {
		t.Fatalf("key known only under the alias, no HostKeyAlias: %v, want it refused", err)
	}
	c.SSHConfigFile = writeSSHConfig(t, "Host "+host+"\n  HostKeyAlias backup-box\n")
	mustUpload(t, dial(t, c), "f", newSource(10, 1))

	c.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	c.AcceptNewHostKey = true
	dial(t, c).Close()
	data, err := os.ReadFile(c.KnownHostsFile)
	if err != nil || !strings.HasPrefix(string(data), "backup-box ") {
		t.Errorf("trusted on first use: known_hosts %q (%v), want the key under backup-box", data, err)
	}
}

// TestConnectTimeout: ConnectTimeout in the SSH config bounds the dial and
// the handshake where the caller set no DialTimeout.
func TestConnectTimeout(t *testing.T) {
	cfg := writeSSHConfig(t, "Host slow\n  ConnectTimeout 4\nHost bad\n  ConnectTimeout soon\n")
	r, err := Config{Host: "slow", User: "me", SSHConfigFile: cfg}.resolve()
	if err != nil || r.DialTimeout != 4*time.Second {
		t.Errorf("ConnectTimeout 4: dial timeout %v (%v), want 4s", r.DialTimeout, err)
	}
	r, err = Config{Host: "slow", User: "me", SSHConfigFile: cfg, DialTimeout: time.Second}.resolve()
	if err != nil || r.DialTimeout != time.Second {
		t.Errorf("ConnectTimeout under a caller's 1s: %v (%v), want 1s", r.DialTimeout, err)
	}
	if r, err = (Config{Host: "other", User: "me", SSHConfigFile: cfg}).resolve(); err != nil || r.DialTimeout != DefaultDialTimeout {
		t.Errorf("no ConnectTimeout: %v (%v), want the default", r.DialTimeout, err)
	}
	if _, err := (Config{Host: "bad", User: "me", SSHConfigFile: cfg}).resolve(); err == nil || !strings.Contains(err.Error(), "ConnectTimeout") {
		t.Errorf("ConnectTimeout soon: err %v, want one naming it", err)
	}
}
