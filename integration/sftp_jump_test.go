package integration

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/faultproxy"
	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestSFTPProxyJump reaches the server through a jump host that the SSH
// config names with ProxyJump. The jump host is the same sshd behind the
// fault proxy, and the target's own address is the sshd's port, which ferry
// could also reach directly: only the bytes counted at the proxy show that
// the connection went through the jump host. A link reset at the jump host
// in the middle of an upload must be survived like any other (a new path
// through the jump host, the upload resumed); a jump host with an unknown
// key must stop the run before anything is sent to the target; and a
// ProxyCommand beside the ProxyJump must be refused, since the config
// parser cannot tell which came first (OpenSSH takes that one).
func TestSFTPProxyJump(t *testing.T) {
	const large = 32 << 20
	cases := []struct {
		name       string
		trustJump  bool   // known_hosts holds the jump host's key
		extra      string // more lines for the target's Host block
		reset      bool   // reset the jump host's link after half the large file
		wantExit   int
		wantInErr  []string
		wantResume bool
	}{
		{name: "through the jump host", trustJump: true, wantExit: ferrybin.ExitOK},
		{name: "reset at the jump host", trustJump: true, reset: true, wantExit: ferrybin.ExitOK, wantResume: true},
		{name: "jump host key unknown", wantExit: ferrybin.ExitUnreachable, wantInErr: []string{"jump host", "is unknown"}},
		{name: "ProxyCommand beside it", trustJump: true, extra: "  ProxyCommand nc %h %p\n", wantExit: ferrybin.ExitUsage, wantInErr: []string{"keep one"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := treecheck.Spec{Seed: testSeed(t), Dirs: 2, SmallFiles: 8, LargeFiles: 1, LargeMin: large, LargeMax: large}
			r := newSFTPRig(t, sshd.Options{}, spec)
			jumpHost, jumpPort, _ := strings.Cut(r.proxy.Addr(), ":")
			host, port, _ := strings.Cut(r.srv.Addr(), ":")
			cfg := fmt.Sprintf("Host target\n  HostName %s\n  Port %s\n  User %s\n  ProxyJump jumper\n%s\nHost jumper\n  HostName %s\n  Port %s\n  User %s\n",
				host, port, r.srv.User(), tc.extra, jumpHost, jumpPort, r.srv.User())
			if tc.reset {
				r.proxy.ResetAfter(large / 2)
			}
			res, ok := r.syncTarget(t, cfg, r.jumpKnownHosts(t, tc.trustJump), tc.wantExit, tc.wantInErr)
			if !ok {
				return
			}
			r.check(t)
			if up := r.proxy.BytesUp(); up < large {
				t.Errorf("%d bytes went through the jump host for a tree with a %d-byte file: ferry did not connect through it", up, large)
			}
			if tc.reset && r.proxy.Armed() {
				t.Fatalf("the reset never fired: %d bytes went through the jump host", r.proxy.BytesUp())
			}
			if resumed := verifiedRE.MatchString(res.Stderr); resumed != tc.wantResume {
				t.Errorf("upload resumed: %v, want %v\n%s", resumed, tc.wantResume, res.Stderr)
			}
		})
	}
}

// relayEnv makes the test binary a proxy command (see relay).
const relayEnv = "FERRY_TEST_RELAY"

// relayHost is the host name the proxy command test gives the server: it
// does not resolve, so only a connection through the command reaches it.
const relayHost = "relayed.invalid"

// relay is the test binary run as a ProxyCommand with the arguments HOST
// PORT: it connects to 127.0.0.1:PORT when HOST is relayHost and copies
// standard input to the connection and the connection to standard output,
// as `nc` would.
func relay(args []string) int {
	if len(args) != 2 || args[0] != relayHost {
		fmt.Fprintf(os.Stderr, "relay: want %s PORT, got %q\n", relayHost, args)
		return 2
	}
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", args[1]))
	if err != nil {
		fmt.Fprintf(os.Stderr, "relay: %v\n", err)
		return 1
	}
	go func() {
		io.Copy(c, os.Stdin)
		c.(*net.TCPConn).CloseWrite()
	}()
	io.Copy(os.Stdout, c)
	return 0
}

// TestSFTPProxyCommand reaches the server through a ProxyCommand: the
// test binary itself, which connects to the fault proxy in front of sshd.
// The server's HostName does not resolve, so a run that ignored the
// command could not connect at all. A reset in the middle of an upload
// ends the command's connection; the retry must run the command again and
// resume. A command that fails must fail the run with what it wrote to
// standard error.
func TestSFTPProxyCommand(t *testing.T) {
	const large = 32 << 20
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		command   string // "" runs the relay
		reset     bool
		wantExit  int
		wantInErr string
	}{
		{name: "through the command", wantExit: ferrybin.ExitOK},
		{name: "reset through the command", reset: true, wantExit: ferrybin.ExitOK},
		{name: "command fails", command: "sh -c 'echo bastion says no >&2; exit 7'", wantExit: ferrybin.ExitUnreachable, wantInErr: "bastion says no"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := treecheck.Spec{Seed: testSeed(t), Dirs: 2, SmallFiles: 8, LargeFiles: 1, LargeMin: large, LargeMax: large}
			r := newSFTPRig(t, sshd.Options{}, spec)
			_, port, _ := strings.Cut(r.proxy.Addr(), ":")
			kh, err := r.srv.KnownHostsFor(net.JoinHostPort(relayHost, port))
			if err != nil {
				t.Fatal(err)
			}
			command := tc.command
			if command == "" {
				command = fmt.Sprintf("env %s=1 '%s' %%h %%p", relayEnv, self)
			}
			cfg := fmt.Sprintf("Host target\n  HostName %s\n  Port %s\n  User %s\n  ProxyCommand %s\n", relayHost, port, r.srv.User(), command)
			if tc.reset {
				r.proxy.ResetAfter(large / 2)
			}
			res, ok := r.syncTarget(t, cfg, kh, tc.wantExit, []string{tc.wantInErr})
			if !ok {
				return
			}
			r.check(t)
			if up := r.proxy.BytesUp(); up < large {
				t.Errorf("only %d bytes went through the proxy command for a tree with a %d-byte file", up, large)
			}
			if tc.reset {
				if r.proxy.Armed() {
					t.Fatalf("the reset never fired: %d bytes went up", r.proxy.BytesUp())
				}
				if !verifiedRE.MatchString(res.Stderr) {
					t.Errorf("the upload did not resume after the reset:\n%s", res.Stderr)
				}
			}
		})
	}
}

// TestSFTPProxyJumpBlackHole stops every byte at the jump host in the
// middle of an upload, the sockets left open. The keepalive runs end to end,
// through the jump host, so it must declare the connection dead within its
// bound; ferry must then go through the jump host again and, once the link
// passes, finish the job.
func TestSFTPProxyJumpBlackHole(t *testing.T) {
	const (
		size  = 64 << 20
		bound = 3*time.Second + 10*time.Second // keepalive 1s x 3, and slack
	)
	r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{Seed: testSeed(t), LargeFiles: 1, LargeMin: size, LargeMax: size})
	jumpHost, jumpPort, _ := strings.Cut(r.proxy.Addr(), ":")
	host, port, _ := strings.Cut(r.srv.Addr(), ":")
	cfg := fmt.Sprintf("Host target\n  HostName %s\n  Port %s\n  ProxyJump %s@%s:%s\n", host, port, r.srv.User(), jumpHost, jumpPort)
	khPath, cfgPath := r.jumpKnownHosts(t, true), writeTemp(t, "ssh_config", []byte(cfg))
	r.proxy.FireAfter(size/2, faultproxy.FaultBlackHole)
	p := ferrybin.Start(t, "-v", "sync", r.src, "sftp://"+r.srv.User()+"@target"+r.dst, "--identity", r.srv.ClientKeyPath(),
		"--known-hosts", khPath, "--ssh-config", cfgPath, "--retries", "3",
		"--keepalive", "1s", "--keepalive-max-missed", "3", "--stall-timeout", "2m")
	fired := waitFor(t, p, 60*time.Second, "the black hole to fire", func() bool { return !r.proxy.Armed() })
	accepted := r.proxy.Accepted()
	r.checkTorn(t)
	waitFor(t, p, bound+30*time.Second, "ferry to go through the jump host again", func() bool { return r.proxy.Accepted() > accepted })
	r.proxy.Pass()
	res := p.Wait()
	if res.ExitCode != ferrybin.ExitOK {
		t.Fatalf("sync through a black hole at the jump host: %s", res)
	}
	r.check(t)
	dead, ok := logTime(res.Stderr, "sftp connection dead")
	if !ok {
		t.Fatalf("no \"sftp connection dead\" in the log: the keepalive did not see the black hole\n%s", res)
	}
	if detect := dead.Sub(fired); detect > bound {
		t.Errorf("black hole at the jump host detected after %v, want within %v", detect, bound)
	} else {
		t.Logf("black hole at the jump host detected after %v; job done in %v", detect.Round(time.Millisecond), res.Duration.Round(time.Millisecond))
	}
}

// writeTemp writes data to a file called name in a new temporary folder
// and returns its path.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// jumpKnownHosts returns a known_hosts file that trusts the server under
// its own address and, with jump, under the fault proxy's too: the jump
// host the tests put in front of it.
func (r *sftpRig) jumpKnownHosts(t *testing.T, jump bool) string {
	t.Helper()
	kh, err := os.ReadFile(r.srv.KnownHostsPath())
	if err != nil {
		t.Fatal(err)
	}
	if jump {
		j, err := os.ReadFile(r.knownHosts)
		if err != nil {
			t.Fatal(err)
		}
		kh = append(kh, j...)
	}
	return writeTemp(t, "known_hosts", kh)
}

// syncTarget runs `ferry sync` from the rig's source to the folder of the
// SSH config's Host "target", with that config and the known_hosts file
// kh, as runExpect.
func (r *sftpRig) syncTarget(t *testing.T, cfg, kh string, want int, wantInErr []string) (ferrybin.Result, bool) {
	t.Helper()
	return r.runExpect(t, []string{"sync", r.src, "sftp://target" + r.dst, "--identity", r.srv.ClientKeyPath(),
		"--known-hosts", kh, "--ssh-config", writeTemp(t, "ssh_config", []byte(cfg)), "--retries", "3"}, want, wantInErr)
}

// runExpect runs ferry with args and fails the test unless it exits with
// want. A refusal must name each of wantInErr and leave the target
// untouched. It reports whether the run succeeded.
func (r *sftpRig) runExpect(t *testing.T, args []string, want int, wantInErr []string) (ferrybin.Result, bool) {
	t.Helper()
	before, _ := countEntries(t, r.dst)
	res := ferrybin.Run(t, 2*time.Minute, args...)
	if res.ExitCode != want {
		t.Fatalf("exit %d, want %d\n%s", res.ExitCode, want, res)
	}
	if want == ferrybin.ExitOK {
		return res, true
	}
	t.Logf("refused: %s", strings.TrimSpace(res.Stderr))
	for _, s := range wantInErr {
		if !strings.Contains(res.Stderr, s) {
			t.Errorf("error output lacks %q:\n%s", s, res.Stderr)
		}
	}
	if n, _ := countEntries(t, r.dst); n != before {
		t.Errorf("a refused run changed the target: %d entries, %d before", n, before)
	}
	return res, false
}
