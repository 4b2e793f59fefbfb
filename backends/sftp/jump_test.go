package sftp

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseJumps(t *testing.T) {
	tests := []struct {
		in   string
		want []jumpSpec
		err  bool
	}{
		{in: "bastion", want: []jumpSpec{{host: "bastion"}}},
		{in: "ops@bastion:2222", want: []jumpSpec{{user: "ops", host: "bastion", port: 2222}}},
		{in: "a, b@c:22", want: []jumpSpec{{host: "a"}, {user: "b", host: "c", port: 22}}},
		{in: "ssh://u@h:2200", want: []jumpSpec{{user: "u", host: "h", port: 2200}}},
		{in: "[::1]:22", want: []jumpSpec{{host: "::1", port: 22}}},
		{in: "[::1]", want: []jumpSpec{{host: "::1"}}},
		{in: "h:0", err: true},
		{in: "h:x", err: true},
		{in: "-oProxyCommand=x", err: true},
		{in: "a,,b", err: true},
		{in: "u@", err: true},
	}
	for _, tt := range tests {
		got, err := parseJumps(tt.in)
		if (err != nil) != tt.err {
			t.Errorf("parseJumps(%q) error = %v, want error %v", tt.in, err, tt.err)
			continue
		}
		if !tt.err && fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("parseJumps(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// TestResolveJumps: each jump host is resolved from the SSH config like the
// target; only the first one's own ProxyJump is followed; "none" means no
// jump; a loop is an error, as are ProxyCommand and ProxyJump together; a
// ProxyCommand's tokens are expanded as OpenSSH does.
func TestResolveJumps(t *testing.T) {
	cfg := `Host target
  HostName 10.0.0.5
  ProxyJump ops@outer,inner:2200

Host outer
  HostName outer.example
  Port 2022
  ProxyJump edge

Host inner
  HostName inner.example
  User innie
  ProxyJump ignored

Host edge
  HostName edge.example
  User edgy

Host direct
  HostName 10.0.0.6
  ProxyJump none

Host loop1
  ProxyJump loop2
Host loop2
  ProxyJump loop1

Host piped
  HostName 10.0.0.7
  Port 2222
  ProxyCommand ssh -W %h:%p -l %r -o Tag=%n-100%% bastion

Host both
  ProxyCommand nc %h %p
  ProxyJump edge
`
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	chain := func(r *resolved) string {
		var parts []string
		var walk func(r *resolved)
		walk = func(r *resolved) {
			for _, j := range r.jumps {
				s := j.User + "@" + j.addr
				if len(j.jumps) > 0 {
					s += "{"
					inner := parts
					parts = nil
					walk(j)
					s += strings.Join(parts, " ") + "}"
					parts = inner
				}
				parts = append(parts, s)
			}
		}
		walk(r)
		return strings.Join(parts, " ")
	}
	r, err := Config{Host: "target", User: "me", SSHConfigFile: path}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := chain(r), "ops@outer.example:2022{edgy@edge.example:22} innie@inner.example:2200"; got != want {
		t.Errorf("jumps of target = %q, want %q", got, want)
	}
	if r, err := (Config{Host: "direct", User: "me", SSHConfigFile: path}).resolve(); err != nil || len(r.jumps) != 0 {
		t.Errorf("ProxyJump none: jumps %v, err %v", r, err)
	}
	if _, err := (Config{Host: "loop1", User: "me", SSHConfigFile: path}).resolve(); err == nil || !strings.Contains(err.Error(), "deep") {
		t.Errorf("ProxyJump loop: err %v, want one about nesting", err)
	}
	r, err = Config{Host: "piped", User: "me", SSHConfigFile: path}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if want := "ssh -W 10.0.0.7:2222 -l me -o Tag=piped-100% bastion"; r.proxyCommand != want {
		t.Errorf("ProxyCommand expanded to %q, want %q", r.proxyCommand, want)
	}
	if _, err := (Config{Host: "both", User: "me", SSHConfigFile: path}).resolve(); err == nil || !strings.Contains(err.Error(), "keep one") {
		t.Errorf("ProxyCommand and ProxyJump: err %v, want one asking to keep one", err)
	}
}

// TestJumpedConnDeadline: a channel has no deadlines, so a deadline on the
// path closes it when it passes, releasing a read blocked on it, and a
// cleared deadline leaves it open.
func TestJumpedConnDeadline(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	j := &jumpedConn{Conn: a}
	j.SetDeadline(time.Now().Add(time.Hour))
	j.SetDeadline(time.Time{})
	go b.Write([]byte("x"))
	buf := make([]byte, 1)
	if _, err := j.Read(buf); err != nil {
		t.Fatalf("read after a cleared deadline: %v", err)
	}
	j.SetDeadline(time.Now().Add(50 * time.Millisecond))
	done := make(chan error, 1)
	go func() {
		_, err := j.Read(buf)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a read past the deadline returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read blocked past the deadline was not released")
	}
}
