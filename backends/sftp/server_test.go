package sftp

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pkg/sftp"
	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
)

// testServer is an in-process SSH server on 127.0.0.1 serving the sftp
// subsystem over a temporary directory and, unless noExec, the one command
// ferry runs: sha256sum -- 'path'.
type testServer struct {
	t        testing.TB
	ln       net.Listener
	addr     string
	dir      string
	hostKeys []ssh.Signer
	noExec   bool
	memFS    sftp.Handlers

	maxSessions int

	authAttempts atomic.Int32
	users        sync.Map // user names that logged in
	mu           sync.Mutex
	conns        []net.Conn
	wg           sync.WaitGroup

	// methods counts the authentication attempts per method (publickey,
	// password, keyboard-interactive).
	methods sync.Map
}

type serverOpts struct {
	// hostKeyTypes lists the host key types offered, in order; default
	// ed25519 only.
	hostKeyTypes []string
	noExec       bool
	clientKey    ssh.PublicKey
	// memFS serves pkg/sftp's in-memory request server instead of the
	// directory; its plain rename refuses to replace a file, as OpenSSH's.
	memFS bool
	// password, if set, is accepted with the "password" method, or with
	// "keyboard-interactive" alone when kbdInteractive is set.
	password       string
	kbdInteractive bool
	// kbdQuestions replaces the one hidden "Password: " question asked by
	// keyboard-interactive.
	kbdQuestions []kbdQuestion
	// maxSessions, if set, is how many session channels one connection
	// may open; more are refused, as sshd's MaxSessions does.
	maxSessions int
}

type kbdQuestion struct {
	text string
	echo bool
}

// countMethod records one authentication attempt with method.
func (s *testServer) countMethod(method string) {
	n, _ := s.methods.LoadOrStore(method, new(atomic.Int32))
	n.(*atomic.Int32).Add(1)
}

// methodCount is how many attempts used method.
func (s *testServer) methodCount(method string) int {
	if n, ok := s.methods.Load(method); ok {
		return int(n.(*atomic.Int32).Load())
	}
	return 0
}

func newHostKey(t testing.TB, typ string) ssh.Signer {
	t.Helper()
	var key any
	var err error
	switch typ {
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("unknown key type %s", typ)
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startServer(t testing.TB, o serverOpts) *testServer {
	t.Helper()
	if len(o.hostKeyTypes) == 0 {
		o.hostKeyTypes = []string{"ed25519"}
	}
	s := &testServer{t: t, dir: t.TempDir(), noExec: o.noExec, maxSessions: o.maxSessions}
	if o.memFS {
		s.memFS = sftp.InMemHandler()
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(md ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			s.authAttempts.Add(1)
			s.countMethod("publickey")
			if o.clientKey != nil && string(key.Marshal()) == string(o.clientKey.Marshal()) {
				s.users.Store(md.User(), true)
				return nil, nil
			}
			return nil, fmt.Errorf("key not authorized")
		},
	}
	switch {
	case o.password != "" && o.kbdInteractive:
		qs := o.kbdQuestions
		if qs == nil {
			qs = []kbdQuestion{{"Password: ", false}}
		}
		cfg.KeyboardInteractiveCallback = func(md ssh.ConnMetadata, ask ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			s.countMethod("keyboard-interactive")
			// A banner round first, as PAM servers send.
			if _, err := ask("", "welcome", nil, nil); err != nil {
				return nil, err
			}
			var texts []string
			var echos []bool
			for _, q := range qs {
				texts, echos = append(texts, q.text), append(echos, q.echo)
			}
			answers, err := ask("", "", texts, echos)
			if err != nil {
				return nil, err
			}
			if len(answers) == 1 && answers[0] == o.password {
				s.users.Store(md.User(), true)
				return nil, nil
			}
			return nil, fmt.Errorf("wrong password")
		}
	case o.password != "":
		cfg.PasswordCallback = func(md ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			s.countMethod("password")
			if string(pw) == o.password {
				s.users.Store(md.User(), true)
				return nil, nil
			}
			return nil, fmt.Errorf("wrong password")
		}
	}
	for _, typ := range o.hostKeyTypes {
		k := newHostKey(t, typ)
		s.hostKeys = append(s.hostKeys, k)
		cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln, s.addr = ln, ln.Addr().String()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, nc)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serveConn(nc, cfg)
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *testServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *testServer) serveConn(nc net.Conn, cfg *ssh.ServerConfig) {
	defer nc.Close()
	sc, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ssh.DiscardRequests(reqs)
	}()
	sessions := 0
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "no")
			continue
		}
		if sessions++; s.maxSessions > 0 && sessions > s.maxSessions {
			nch.Reject(ssh.Prohibited, "no more sessions")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveSession(ch, creqs)
		}()
	}
}

func (s *testServer) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "subsystem":
			if len(req.Payload) < 4 || string(req.Payload[4:]) != "sftp" {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				for range reqs {
				}
			}()
			if s.memFS.FileGet != nil {
				rs := sftp.NewRequestServer(ch, s.memFS)
				rs.Serve()
				rs.Close()
				return
			}
			// No working directory option: with one, pkg/sftp's server makes
			// relative symlink targets absolute. Tests use absolute roots.
			srv, err := sftp.NewServer(ch)
			if err != nil {
				return
			}
			srv.Serve()
			srv.Close()
			return
		case "exec":
			if s.noExec || len(req.Payload) < 4 {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			status := s.exec(string(req.Payload[4:]), ch)
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
			return
		default:
			req.Reply(false, nil)
		}
	}
}

// exec answers "sha256sum -- 'path'" the way coreutils does. It has no
// head: a pipe from head into sha256sum hashes nothing, as a shell runs it
// where head is missing.
func (s *testServer) exec(cmd string, ch ssh.Channel) uint32 {
	if strings.HasPrefix(cmd, "head ") && strings.HasSuffix(cmd, " | sha256sum") {
		fmt.Fprintf(ch.Stderr(), "sh: 1: head: not found\n")
		fmt.Fprintf(ch, "%s  -\n", emptySHA256)
		return 0
	}
	arg, ok := strings.CutPrefix(cmd, "sha256sum -- ")
	if !ok || len(arg) < 2 || arg[0] != '\'' || arg[len(arg)-1] != '\'' {
		fmt.Fprintf(ch.Stderr(), "unsupported command %q\n", cmd)
		return 127
	}
	name := strings.ReplaceAll(arg[1:len(arg)-1], `'\''`, `'`)
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(s.dir, p)
	}
	f, err := os.Open(p)
	if err != nil {
		fmt.Fprintf(ch.Stderr(), "sha256sum: %s: %v\n", name, err)
		return 1
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return 1
	}
	fmt.Fprintf(ch, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), name)
	return 0
}

// clientKey is a generated user key written to a file.
type clientKey struct {
	file string
	pub  ssh.PublicKey
}

func newClientKey(t testing.TB, passphrase string) clientKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "ferry test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "ferry test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(f, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{file: f, pub: sp}
}

// writeKnownHosts writes a known_hosts file holding keys for addr.
func writeKnownHosts(t testing.TB, addr string, keys ...ssh.PublicKey) string {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(knownhosts.Line([]string{addr}, k) + "\n")
	}
	f := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(f, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// env is a server with a client key and a known_hosts file that trusts it.
type env struct {
	srv        *testServer
	key        clientKey
	knownHosts string
	root       string
}

func newEnv(t testing.TB, o serverOpts) *env {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	key := newClientKey(t, "")
	o.clientKey = key.pub
	srv := startServer(t, o)
	root := filepath.Join(srv.dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	var pubs []ssh.PublicKey
	for _, k := range srv.hostKeys {
		pubs = append(pubs, k.PublicKey())
	}
	return &env{srv: srv, key: key, knownHosts: writeKnownHosts(t, srv.addr, pubs...), root: root}
}

// config returns a Config for the env's server; the host and port are the
// server's, so host key checks see them even when Dial goes through a proxy.
func (e *env) config() Config {
	host, port, _ := net.SplitHostPort(e.srv.addr)
	var p int
	fmt.Sscan(port, &p)
	return Config{
		Host: host, Port: p, User: "tester", Root: e.root,
		IdentityFiles:  []string{e.key.file},
		KnownHostsFile: e.knownHosts,
		SSHConfigFile:  "none",
	}
}
