package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Verify says how an upload's content is checked before it is published.
type Verify string

const (
	// VerifyAuto, the default, compares a SHA-256 computed by the server
	// of the prefix a resumed upload kept, when it kept more than the
	// bytes compared on resume (requests in flight x chunk size, 2 MiB by
	// default) and the account can run commands (head and sha256sum, else
	// sha256sum of the whole file), and checks the size of the others.
	// Such a resume keeps a prefix an earlier attempt wrote of which only
	// the tail was compared with the source; the bytes an attempt sends
	// itself have every byte checked by SSH on the way and each write
	// confirmed, and a hash of each upload would cost a command per file.
	VerifyAuto Verify = "auto"
	// VerifyNone checks the size only.
	VerifyNone Verify = "none"
	// VerifyHash compares a SHA-256 computed by the server (exec of
	// sha256sum) with the source's; without one it falls back to read-back.
	VerifyHash Verify = "hash"
	// VerifyReadBack reads the uploaded bytes back and compares them.
	VerifyReadBack Verify = "read-back"
)

// checksWhole reports whether v checks more than the size of an upload
// sent whole in one attempt (auto checks resumed uploads only).
func (v Verify) checksWhole() bool { return v == VerifyHash || v == VerifyReadBack }

// ParseVerify parses "auto", "none", "hash" or "read-back" ("" is auto).
func ParseVerify(s string) (Verify, error) {
	switch v := Verify(s); v {
	case "", VerifyAuto:
		return VerifyAuto, nil
	case VerifyNone, VerifyHash, VerifyReadBack:
		return v, nil
	}
	return "", fmt.Errorf("unknown verify mode %q (want auto, none, hash or read-back)", s)
}

// Config describes one SFTP target. The zero value of every field but Host
// means "the default"; fields left empty are filled from the SSH config file
// where it has an answer for the host.
type Config struct {
	// Host is a host name, an address, or a Host alias of the SSH config.
	Host string
	// Port defaults to the SSH config's Port, then 22.
	Port int
	// User defaults to the SSH config's User, then the local user name.
	User string
	// Root is the target directory on the server: absolute, or relative to
	// the login directory. "" is the login directory.
	Root string

	// IdentityFiles are private key files tried in order, before the SSH
	// config's IdentityFile entries and ssh-agent's keys. When neither this
	// nor the SSH config names one, ~/.ssh/id_ed25519, id_ecdsa and id_rsa
	// are tried where they exist.
	IdentityFiles []string
	// Passphrase decrypts encrypted identity files; when set, PassphraseEnv
	// is not read. It is a secret: the backend never logs it nor puts it in
	// an error.
	Passphrase string
	// PassphraseEnv names the environment variable holding the passphrase
	// of encrypted keys (e.g. FERRY_SSH_PASSPHRASE). With neither it nor
	// Passphrase, encrypted keys are left to ssh-agent.
	PassphraseEnv string
	// Password is offered with the "password" and then the
	// "keyboard-interactive" methods, after the keys and ssh-agent's, so a
	// server that takes a key never sees it. Empty: no password login. It
	// is a secret: the backend never logs it nor puts it in an error, and
	// it is sent only after the host key was verified.
	Password string
	// KnownHostsFile defaults to the SSH config's UserKnownHostsFile, then
	// ~/.ssh/known_hosts.
	KnownHostsFile string
	// AcceptNewHostKey trusts a host seen for the first time and appends its
	// key to KnownHostsFile. A changed key is refused all the same.
	AcceptNewHostKey bool
	// SSHConfigFile defaults to ~/.ssh/config; a missing default file is
	// fine, a missing named file is an error. "none" reads no file.
	SSHConfigFile string

	// KeepaliveInterval is the time between keepalive@openssh.com requests
	// (default 15s); a connection from which nothing arrived (no answer,
	// no other byte) for KeepaliveMaxMissed intervals (default 3) is
	// declared dead and closed, and the next call dials a new one.
	KeepaliveInterval  time.Duration
	KeepaliveMaxMissed int
	// DialTimeout bounds the TCP connect and, separately, the SSH handshake
	// (default 15s).
	DialTimeout time.Duration
	// StallTimeout aborts an upload that moved no bytes for this long
	// (default 60s); the attempt fails retryably and its connection is
	// rebuilt.
	StallTimeout time.Duration
	// ChunkSize is the payload of one write request (default 32 KiB, at most
	// 256 KiB - 1 KiB); RequestsInFlight is how many are outstanding per
	// file (default 64).
	ChunkSize        int
	RequestsInFlight int
	// Connections is the size of the connection pool (default 3). Files
	// share connections; a large file is split over two of them.
	Connections int
	// Verify is the content check before publishing (default VerifyAuto:
	// a server-side hash of the prefix resumed uploads kept, the size of
	// the others).
	Verify Verify
	// Logger receives connection events and the verification used; nil
	// discards.
	Logger *slog.Logger
	// OnReconnect, when set, is called each time a connection that died is
	// replaced by a new one (not for the first dial of a pool slot). It is
	// called on the goroutine that dialled, so it must not block.
	OnReconnect func()
	// Dial opens the transport to addr ("host:port"); nil uses a TCP dialer
	// with keepalive. Tests route connections through a proxy with it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Defaults of Config.
const (
	DefaultKeepaliveInterval  = 15 * time.Second
	DefaultKeepaliveMaxMissed = 3
	DefaultDialTimeout        = 15 * time.Second
	DefaultStallTimeout       = 60 * time.Second
	DefaultChunkSize          = 32 << 10
	DefaultRequestsInFlight   = 64
	DefaultConnections        = 3
	maxChunkSize              = 255 << 10
)

// resolved is a Config after defaults and the SSH config are applied.
type resolved struct {
	Config
	addr       string // host:port to dial
	alias      string // Host as given
	knownHosts []string
	identities []string
	explicitID bool     // identities were named, not guessed
	certFiles  []string // CertificateFile entries of the SSH config
	// identitiesOnly is IdentitiesOnly of the SSH config: ssh-agent offers
	// only the keys of the identity files.
	identitiesOnly bool
	// hostKeyAlias is HostKeyAlias of the SSH config: the name the host key
	// is looked up and recorded under instead of the host's.
	hostKeyAlias string
	// jumps are the hosts the connection goes through, in order (ProxyJump
	// in the SSH config); each reaches the next, the last the target.
	jumps []*resolved
	// proxyCommand is ProxyCommand with its tokens expanded: the command
	// whose standard input and output lead to the server.
	proxyCommand string
	creds        *hopCreds // a jump host's keys and known hosts, once loaded
}

// resolve applies the SSH config and the defaults.
func (c Config) resolve() (*resolved, error) {
	return c.resolveHop(0, true)
}

// maxJumpDepth bounds how deep jump hosts may themselves be reached
// through jump hosts, which also ends a ProxyJump loop.
const maxJumpDepth = 8

// resolveHop is resolve for a host reached through depth levels of jump
// hosts; its own ProxyJump is followed only when jumps is set (as OpenSSH
// does, only the first host of a ProxyJump list is reached by its own).
func (c Config) resolveHop(depth int, jumps bool) (*resolved, error) {
	if c.Host == "" {
		return nil, errors.New("sftp: no host given")
	}
	r := &resolved{Config: c, alias: c.Host}
	sc, notes, err := loadSSHConfig(c.SSHConfigFile, c.Host, c.User)
	if err != nil {
		return nil, err
	}
	if c.Logger != nil && depth == 0 {
		for _, n := range notes {
			c.Logger.Info("ssh config not applied", "where", n)
		}
	}
	get := func(key string) string {
		if sc == nil {
			return ""
		}
		v, _ := sc.Get(c.Host, key)
		return v
	}
	getAll := func(key string) []string {
		if sc == nil {
			return nil
		}
		v, _ := sc.GetAll(c.Host, key)
		return v
	}
	if hn := get("HostName"); hn != "" {
		r.Host = strings.ReplaceAll(hn, "%h", c.Host)
	}
	if r.Port == 0 {
		if p := get("Port"); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("sftp: ssh config: Host %s: invalid Port %q", c.Host, p)
			}
			r.Port = n
		} else {
			r.Port = 22
		}
	}
	if r.User == "" {
		r.User = get("User")
	}
	if r.User == "" {
		if u, err := user.Current(); err == nil {
			r.User = u.Username
		}
	}
	r.addr = net.JoinHostPort(r.Host, strconv.Itoa(r.Port))
	if r.Root == "" {
		r.Root = "."
	}
	exp := func(p string) string { return expandPath(p, r) }
	for _, f := range c.IdentityFiles {
		r.identities = append(r.identities, exp(f))
	}
	for _, f := range getAll("IdentityFile") {
		r.identities = append(r.identities, exp(f))
	}
	r.explicitID = len(r.identities) > 0
	r.identitiesOnly = strings.EqualFold(get("IdentitiesOnly"), "yes")
	r.hostKeyAlias = get("HostKeyAlias")
	for _, f := range getAll("CertificateFile") {
		r.certFiles = append(r.certFiles, exp(f))
	}
	if !r.explicitID {
		for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
			p := exp("~/.ssh/" + n)
			if _, err := os.Stat(p); err == nil {
				r.identities = append(r.identities, p)
			}
		}
	}
	switch {
	case c.KnownHostsFile != "":
		r.knownHosts = []string{exp(c.KnownHostsFile)}
	case get("UserKnownHostsFile") != "":
		for _, f := range strings.Fields(get("UserKnownHostsFile")) {
			r.knownHosts = append(r.knownHosts, exp(f))
		}
	default:
		r.knownHosts = []string{exp("~/.ssh/known_hosts")}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&r.KeepaliveInterval, DefaultKeepaliveInterval)
	if ct := get("ConnectTimeout"); r.DialTimeout <= 0 && ct != "" {
		n, err := strconv.Atoi(ct)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("sftp: ssh config: Host %s: invalid ConnectTimeout %q (want seconds)", c.Host, ct)
		}
		r.DialTimeout = time.Duration(n) * time.Second
	}
	def(&r.DialTimeout, DefaultDialTimeout)
	def(&r.StallTimeout, DefaultStallTimeout)
	if r.KeepaliveMaxMissed <= 0 {
		r.KeepaliveMaxMissed = DefaultKeepaliveMaxMissed
	}
	if r.ChunkSize <= 0 {
		r.ChunkSize = DefaultChunkSize
	}
	if r.ChunkSize > maxChunkSize {
		return nil, fmt.Errorf("sftp: chunk size %d is larger than %d", r.ChunkSize, maxChunkSize)
	}
	if r.RequestsInFlight <= 0 {
		r.RequestsInFlight = DefaultRequestsInFlight
	}
	if r.Connections <= 0 {
		r.Connections = DefaultConnections
	}
	if r.Verify == "" {
		r.Verify = VerifyAuto
	}
	if _, err := ParseVerify(string(r.Verify)); err != nil {
		return nil, fmt.Errorf("sftp: %w", err)
	}
	if r.Logger == nil {
		r.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	pc, pj := get("ProxyCommand"), get("ProxyJump")
	if strings.EqualFold(pc, "none") {
		pc = ""
	}
	if strings.EqualFold(pj, "none") {
		pj = ""
	}
	switch {
	case !jumps:
		// Reached through the jump host before it, as OpenSSH does.
	case pc != "" && pj != "":
		// OpenSSH takes whichever comes first; the parser cannot tell.
		return nil, fmt.Errorf("sftp: ssh config: Host %s: both ProxyCommand and ProxyJump are set; keep one", c.Host)
	case pc != "":
		r.proxyCommand = expandProxyCommand(pc, r)
	case pj != "":
		if depth >= maxJumpDepth {
			return nil, fmt.Errorf("sftp: ssh config: Host %s: ProxyJump nests more than %d jump hosts deep (a loop?)", c.Host, maxJumpDepth)
		}
		if r.jumps, err = c.resolveJumps(pj, depth); err != nil {
			return nil, fmt.Errorf("sftp: ssh config: Host %s: %w", c.Host, err)
		}
	}
	return r, nil
}

// expandPath expands ~ and the tokens %d (home), %u (local user), %h (host),
// %r (remote user) and %p (port) as OpenSSH does in file names.
func expandPath(p string, r *resolved) string {
	home, _ := os.UserHomeDir()
	if p == "~" {
		p = home
	} else if strings.HasPrefix(p, "~/") {
		p = filepath.Join(home, p[2:])
	}
	if !strings.Contains(p, "%") {
		return p
	}
	local := ""
	if u, err := user.Current(); err == nil {
		local = u.Username
	}
	return strings.NewReplacer("%%", "%", "%d", home, "%u", local, "%h", r.Host,
		"%r", r.User, "%p", strconv.Itoa(r.Port)).Replace(p)
}
