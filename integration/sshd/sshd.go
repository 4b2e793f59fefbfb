package sshd

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Binary is where Debian's openssh-server puts sshd. It is started by this
// absolute path because sshd re-executes itself and refuses a relative one.
const Binary = "/usr/sbin/sshd"

// binary is Binary, a variable so that a test can make it go missing.
var binary = Binary

// InstallHint says how to get Binary onto a Debian machine.
const InstallHint = "install it with `apt-get install -y --no-install-recommends openssh-server` or run `scripts/test-deps.sh` as root"

// DefaultPassphrase encrypts the client key when Options.EncryptedClientKey is
// set and no passphrase is given.
const DefaultPassphrase = "ferry-test-passphrase"

// readyTimeout bounds how long Start waits for sshd to answer.
const readyTimeout = 15 * time.Second

// Options change the generated server. The zero value gives an ed25519 host
// key, an unencrypted ed25519 client key and raised connection limits.
type Options struct {
	// HostKeyTypes adds host keys of these types ("rsa", "ecdsa") beside the
	// ed25519 key every server has.
	HostKeyTypes []string
	// EncryptedClientKey writes the client private key encrypted with
	// ClientKeyPassphrase (DefaultPassphrase when empty).
	EncryptedClientKey  bool
	ClientKeyPassphrase string
	// DefaultLimits keeps sshd's own MaxStartups (10:30:100) and MaxSessions
	// (10) instead of raising both to 100, to see ferry behave against them.
	DefaultLimits bool
	// ExtraConfig holds sshd_config lines, e.g. "Ciphers aes128-gcm@openssh.com".
	// They are written before the fixture's own settings, so they win: sshd
	// keeps the first value it reads for a keyword. Lines from the first
	// "Match" on are written at the end, where sshd wants Match blocks.
	ExtraConfig []string
}

// Server is a running sshd. Its methods are safe for concurrent use.
type Server struct {
	t          testing.TB
	dir        string
	root       string
	cfgPath    string
	logPath    string
	errPath    string
	pidPath    string
	port       int
	user       string
	clientKey  string
	passphrase string
	knownHosts string
	hostKeys   []ssh.PublicKey

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd has exited
}

// Start generates keys and a config and starts sshd on a free port of
// 127.0.0.1, returning once it answers with an SSH banner. It is stopped,
// with all its sessions, when the test ends. A missing sshd skips the test,
// or fails it when the environment has CI=true; any other failure to start
// fails the test. Start must be called from the test's goroutine.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	if _, err := os.Stat(binary); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sshd fixture: %s not found (%v); %s", binary, err, InstallHint)
		}
		t.Skipf("sshd fixture: %s not found; %s", binary, InstallHint)
	}
	// sshd refuses to start without its privilege-separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshd fixture: create /run/sshd: %v", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshd fixture: current user: %v", err)
	}
	s := &Server{t: t, dir: t.TempDir(), root: t.TempDir(), user: u.Username}
	s.cfgPath = filepath.Join(s.dir, "sshd_config")
	s.logPath = filepath.Join(s.dir, "sshd.log")
	s.errPath = filepath.Join(s.dir, "sshd.stderr")
	s.pidPath = filepath.Join(s.dir, "sshd.pid")
	s.knownHosts = filepath.Join(s.dir, "known_hosts")
	s.clientKey = filepath.Join(s.dir, "id_ed25519")
	if opts.EncryptedClientKey {
		s.passphrase = opts.ClientKeyPassphrase
		if s.passphrase == "" {
			s.passphrase = DefaultPassphrase
		}
	}
	hostKeyPaths, err := s.writeKeys(opts)
	if err != nil {
		t.Fatalf("sshd fixture: %v", err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("sshd fixture: last lines of %s:\n%s", s.logPath, s.logTail(40))
		}
	})

	// A port found free can be taken before sshd binds it; try a new one.
	for attempt := 1; ; attempt++ {
		s.port, err = freePort()
		if err != nil {
			t.Fatalf("sshd fixture: %v", err)
		}
		if err := os.WriteFile(s.cfgPath, []byte(s.config(opts, hostKeyPaths)), 0o600); err != nil {
			t.Fatalf("sshd fixture: write config: %v", err)
		}
		if err := os.WriteFile(s.knownHosts, []byte(knownHostsLines(s.Addr(), s.hostKeys)), 0o600); err != nil {
			t.Fatalf("sshd fixture: write known_hosts: %v", err)
		}
		err = s.start()
		if err == nil {
			return s
		}
		if !errors.Is(err, errBind) || attempt == 5 {
			t.Fatalf("sshd fixture: %v", err)
		}
	}
}

// writeKeys writes the host keys, the client key pair and authorized_keys,
// and returns the host key paths.
func (s *Server) writeKeys(opts Options) ([]string, error) {
	var paths []string
	kinds := []string{"ed25519"}
	for _, k := range opts.HostKeyTypes {
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	for _, kind := range kinds {
		key, err := newKey(kind)
		if err != nil {
			return nil, fmt.Errorf("host key: %w", err)
		}
		p := filepath.Join(s.dir, "ssh_host_"+kind+"_key")
		pub, err := writeKeyPair(p, key, "")
		if err != nil {
			return nil, fmt.Errorf("host key: %w", err)
		}
		paths = append(paths, p)
		s.hostKeys = append(s.hostKeys, pub)
	}
	key, err := newKey("ed25519")
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	pub, err := writeKeyPair(s.clientKey, key, s.passphrase)
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "authorized_keys"), ssh.MarshalAuthorizedKey(pub), 0o600); err != nil {
		return nil, fmt.Errorf("write authorized_keys: %w", err)
	}
	return paths, nil
}

func (s *Server) config(opts Options, hostKeyPaths []string) string {
	var head, tail []string
	for i, l := range opts.ExtraConfig {
		if f := strings.Fields(l); len(f) > 0 && strings.EqualFold(f[0], "Match") {
			tail = opts.ExtraConfig[i:]
			break
		}
		head = append(head, l)
	}
	var b strings.Builder
	for _, l := range head {
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "Port %d\nListenAddress 127.0.0.1\n", s.port)
	for _, p := range hostKeyPaths {
		fmt.Fprintf(&b, "HostKey %s\n", p)
	}
	fmt.Fprintf(&b, "AuthorizedKeysFile %s\n", filepath.Join(s.dir, "authorized_keys"))
	fmt.Fprintf(&b, "PidFile %s\n", s.pidPath)
	b.WriteString(`StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
Subsystem sftp internal-sftp
LogLevel VERBOSE
`)
	if !opts.DefaultLimits {
		b.WriteString("MaxStartups 100\nMaxSessions 100\n")
	}
	for _, l := range tail {
		b.WriteString(l + "\n")
	}
	return b.String()
}

var errBind = errors.New("port already in use")

// start runs sshd on s.port and waits until it is ready. It returns an error
// wrapping errBind when the port was taken.
func (s *Server) start() error {
	_ = os.Remove(s.pidPath)
	stderr, err := os.Create(s.errPath)
	if err != nil {
		return fmt.Errorf("create %s: %w", s.errPath, err)
	}
	defer stderr.Close()
	cmd := exec.Command(binary, "-D", "-f", s.cfgPath, "-E", s.logPath)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	// Its own process group, so a signal meant for the test does not reach it
	// and Stop can reach the listener without touching the test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", binary, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	if err := s.waitReady(cmd.Process.Pid, done); err != nil {
		_ = s.Kill()
		return err
	}
	return nil
}

// waitReady waits until the sshd with the given pid has written its pid file
// (so it, not some other process, holds the port) and answers a connection
// with an SSH banner.
func (s *Server) waitReady(pid int, done <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		select {
		case <-done:
			out := s.logTail(20)
			if b, _ := os.ReadFile(s.errPath); len(b) > 0 {
				out = string(b) + out
			}
			if strings.Contains(out, "Address already in use") || strings.Contains(out, "Cannot bind any address") {
				return fmt.Errorf("sshd on port %d: %w", s.port, errBind)
			}
			if strings.Contains(out, "account is locked") {
				out += "\n(the account " + s.user + " is locked in /etc/shadow; sshd refuses it without PAM)"
			}
			return fmt.Errorf("sshd exited before it was ready:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd on %s not ready after %v:\n%s", s.Addr(), readyTimeout, s.logTail(20))
		}
		if b, err := os.ReadFile(s.pidPath); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
			if err := banner(s.Addr()); err == nil {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// banner connects to addr and reads the SSH identification line.
func banner(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if !bytes.HasPrefix(buf[:n], []byte("SSH-")) {
		return fmt.Errorf("no SSH banner from %s (read %q: %v)", addr, buf[:n], err)
	}
	return nil
}

// freePort returns a port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Kill sends SIGKILL to the listening sshd and to every session process it
// started, so live connections drop at once, and waits for the listener to
// exit. A server that is not running is left alone. It returns an error only
// when a process could not be signalled.
func (s *Server) Kill() error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	err := killTree(cmd.Process.Pid)
	<-done
	return err
}

// Stop kills the server and its sessions, like Kill; it runs when the test
// ends and may be called before. Errors are reported on the test.
func (s *Server) Stop() {
	if err := s.Kill(); err != nil {
		s.t.Errorf("sshd fixture: stop: %v", err)
	}
}

// Restart kills the server with its sessions if it is running and starts it
// again on the same port with the same keys and config, returning once it
// answers. It may be called from any goroutine; it returns an error when sshd
// does not come back within a few seconds.
func (s *Server) Restart() error {
	if err := s.Kill(); err != nil {
		return err
	}
	var err error
	for range 50 {
		if err = s.start(); !errors.Is(err, errBind) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("restart: %w", err)
}

// Running reports whether the listening sshd is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// PID returns the process id of the listening sshd, or 0 when it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Addr returns "127.0.0.1:PORT".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Port returns the port sshd listens on; it stays the same across Restart.
func (s *Server) Port() int { return s.port }

// User returns the login name the client key is authorized for (the user
// running the test).
func (s *Server) User() string { return s.user }

// ClientKeyPath returns the client's private key file (its public key is
// beside it, with ".pub").
func (s *Server) ClientKeyPath() string { return s.clientKey }

// ClientKeyPassphrase returns the passphrase of the client key, or "" when
// it is not encrypted.
func (s *Server) ClientKeyPassphrase() string { return s.passphrase }

// KnownHostsPath returns a known_hosts file holding every host key of the
// server under "[127.0.0.1]:PORT".
func (s *Server) KnownHostsPath() string { return s.knownHosts }

// KnownHostsFor writes a known_hosts file that trusts the server's host keys
// under another address ("127.0.0.1:PORT"), such as a fault proxy's in front
// of it, and returns its path. It fails when the file cannot be written.
func (s *Server) KnownHostsFor(addr string) (string, error) {
	p := filepath.Join(s.dir, "known_hosts."+strings.NewReplacer(":", "_", "[", "", "]", "").Replace(addr))
	if err := os.WriteFile(p, []byte(knownHostsLines(addr, s.hostKeys)), 0o600); err != nil {
		return "", fmt.Errorf("write known_hosts for %s: %w", addr, err)
	}
	return p, nil
}

// HostKeys returns the server's public host keys, ed25519 first.
func (s *Server) HostKeys() []ssh.PublicKey { return s.hostKeys }

// HostKeyFingerprint returns the SHA256 fingerprint of the ed25519 host key,
// as OpenSSH prints it ("SHA256:...").
func (s *Server) HostKeyFingerprint() string { return ssh.FingerprintSHA256(s.hostKeys[0]) }

// Root returns an empty directory, private to this server, for tests to use
// as the target of uploads. Paths under it are valid on the server side.
func (s *Server) Root() string { return s.root }

// URL returns an sftp:// URL for path (absolute, on the server side).
func (s *Server) URL(path string) string {
	return "sftp://" + s.user + "@" + s.Addr() + path
}

// Dir returns the directory holding the config, keys and log.
func (s *Server) Dir() string { return s.dir }

// ConfigPath returns the generated sshd_config.
func (s *Server) ConfigPath() string { return s.cfgPath }

// LogPath returns sshd's log file.
func (s *Server) LogPath() string { return s.logPath }

// ClientConfig returns a client config that authenticates with the client
// key and checks the host key against KnownHostsPath. It fails when a file
// cannot be read or the key cannot be decrypted.
func (s *Server) ClientConfig() (*ssh.ClientConfig, error) {
	pem, err := os.ReadFile(s.clientKey)
	if err != nil {
		return nil, fmt.Errorf("read client key: %w", err)
	}
	var signer ssh.Signer
	if s.passphrase != "" {
		signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(s.passphrase))
	} else {
		signer, err = ssh.ParsePrivateKey(pem)
	}
	if err != nil {
		return nil, fmt.Errorf("parse client key %s: %w", s.clientKey, err)
	}
	hostKeys, err := knownhosts.New(s.knownHosts)
	if err != nil {
		return nil, fmt.Errorf("read known_hosts: %w", err)
	}
	return &ssh.ClientConfig{
		User:            s.user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys,
		Timeout:         5 * time.Second,
	}, nil
}

func (s *Server) logTail(n int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
