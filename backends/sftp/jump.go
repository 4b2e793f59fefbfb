package sftp

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/ferrysync/ferry/backends"
)

// Jump hosts (ProxyJump in the SSH config). The connection to the target
// runs through an SSH connection to each jump host in turn, each asked
// (direct-tcpip) for a connection to the next, as OpenSSH's ProxyJump does.
// Every jump host is resolved from the SSH config like the target (its
// HostName, Port, User, IdentityFile, UserKnownHostsFile; the first one's
// own ProxyJump too) and its host key is checked against known_hosts before
// anything is sent to it.

// jumpSpec is one entry of a ProxyJump list: [user@]host[:port], or the
// same as an ssh:// URI.
type jumpSpec struct {
	user, host string
	port       int
}

// parseJumps parses a ProxyJump value.
func parseJumps(v string) ([]jumpSpec, error) {
	var out []jumpSpec
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		s := strings.TrimPrefix(item, "ssh://")
		var j jumpSpec
		if at := strings.LastIndex(s, "@"); at >= 0 {
			j.user, s = s[:at], s[at+1:]
		}
		j.host = s
		if h, p, err := net.SplitHostPort(s); err == nil {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("ProxyJump %q: invalid port in %q", v, item)
			}
			j.host, j.port = h, n
		} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
			j.host = s[1 : len(s)-1]
		}
		if j.host == "" || strings.HasPrefix(j.host, "-") || strings.ContainsAny(j.host, " \t/") {
			return nil, fmt.Errorf("ProxyJump %q: invalid jump host %q", v, item)
		}
		out = append(out, j)
	}
	return out, nil
}

// resolveJumps resolves the jump hosts of a ProxyJump value for a host
// reached through depth levels of them. Only the first may have jump hosts
// of its own; the others are reached through the one before.
func (c Config) resolveJumps(v string, depth int) ([]*resolved, error) {
	specs, err := parseJumps(v)
	if err != nil {
		return nil, err
	}
	var out []*resolved
	for i, j := range specs {
		hc := Config{
			Host: j.host, Port: j.port, User: j.user,
			IdentityFiles: c.IdentityFiles, Passphrase: c.Passphrase, PassphraseEnv: c.PassphraseEnv,
			KnownHostsFile: c.KnownHostsFile, AcceptNewHostKey: c.AcceptNewHostKey, SSHConfigFile: c.SSHConfigFile,
			KeepaliveInterval: c.KeepaliveInterval, DialTimeout: c.DialTimeout, StallTimeout: c.StallTimeout,
			KeepaliveMaxMissed: c.KeepaliveMaxMissed, Logger: c.Logger, Dial: c.Dial,
		}
		hr, err := hc.resolveHop(depth+1, i == 0)
		if err != nil {
			return nil, fmt.Errorf("jump host %s: %w", j.host, err)
		}
		out = append(out, hr)
	}
	return out, nil
}

// hopCreds are a jump host's known hosts and keys, loaded once per Backend.
type hopCreds struct {
	hk   *hostKeys
	keys *keys
}

// loadHopCreds loads the known hosts and keys of every jump host of r.
func loadHopCreds(r *resolved) error {
	for _, j := range r.jumps {
		hk, err := newHostKeys(j.knownHosts, j.AcceptNewHostKey)
		if err != nil {
			return fmt.Errorf("jump host %s: %w: %w", j.addr, backends.ErrAuth, err)
		}
		k, err := loadKeys(j)
		if err != nil {
			return fmt.Errorf("jump host %s: %w", j.addr, err)
		}
		j.creds = &hopCreds{hk: hk, keys: k}
		if err := loadHopCreds(j); err != nil {
			return err
		}
	}
	return nil
}

// dialPath opens the transport to r's server: a TCP connection, one
// through r's jump hosts, or r's proxy command.
func (b *Backend) dialPath(ctx context.Context, r *resolved) (net.Conn, error) {
	if r.proxyCommand != "" {
		return dialCommand(ctx, r)
	}
	if len(r.jumps) == 0 {
		return dialTCP(ctx, r)
	}
	jc := &jumpedConn{}
	var prev *ssh.Client
	for i, j := range r.jumps {
		var nc net.Conn
		var err error
		if prev == nil {
			nc, err = b.dialPath(ctx, j)
			jc.tcp = underlyingTCP(nc)
		} else {
			nc, err = dialThrough(ctx, prev, r.jumps[i-1], j.addr)
			// A channel has no deadline: this one's closes the path so far.
			nc = &jumpedConn{Conn: nc, via: slices.Clone(jc.via), tcp: jc.tcp}
		}
		if err != nil {
			jc.closeVia()
			return nil, err
		}
		client, err := b.hopHandshake(ctx, nc, j)
		if err != nil {
			nc.Close()
			jc.closeVia()
			return nil, fmt.Errorf("jump host %s: %w", j.addr, err)
		}
		jc.via = append(jc.via, client)
		prev = client
	}
	nc, err := dialThrough(ctx, prev, r.jumps[len(r.jumps)-1], r.addr)
	if err != nil {
		jc.closeVia()
		return nil, err
	}
	jc.Conn = nc
	return jc, nil
}

// dialTCP opens a TCP connection to r's address, bounded by DialTimeout
// and ctx, with TCP keepalive and a user timeout.
func dialTCP(ctx context.Context, r *resolved) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, r.DialTimeout)
	defer cancel()
	dialFn := r.Dial
	if dialFn == nil {
		d := &net.Dialer{KeepAlive: r.KeepaliveInterval}
		dialFn = d.DialContext
	}
	nc, err := dialFn(dctx, "tcp", r.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dial %s: %w", r.addr, ctx.Err())
		}
		return nil, fmt.Errorf("dial %s: %w: %w", r.addr, backends.ErrUnreachable, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		setUserTimeout(tc, max(r.StallTimeout, r.KeepaliveInterval*time.Duration(r.KeepaliveMaxMissed)))
	}
	return nc, nil
}

// dialThrough asks the jump host's connection for a connection to addr.
func dialThrough(ctx context.Context, via *ssh.Client, jump *resolved, addr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, jump.DialTimeout)
	defer cancel()
	nc, err := via.DialContext(dctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dial %s through jump host %s: %w", addr, jump.addr, ctx.Err())
		}
		return nil, fmt.Errorf("dial %s through jump host %s: %w: %w", addr, jump.addr, backends.ErrUnreachable, err)
	}
	return nc, nil
}

// hopHandshake runs the SSH handshake with jump host j over nc, bounded by
// its DialTimeout and by ctx.
func (b *Backend) hopHandshake(ctx context.Context, nc net.Conn, j *resolved) (*ssh.Client, error) {
	nc.SetDeadline(time.Now().Add(j.DialTimeout))
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	client, err := b.handshake(ctx, nc, j, j.creds.hk, j.creds.keys)
	if err != nil {
		return nil, explainVia(nc, err)
	}
	if !stop() {
		client.Close()
		return nil, fmt.Errorf("ssh handshake with %s: %w", j.addr, ctx.Err())
	}
	nc.SetDeadline(time.Time{})
	return client, nil
}

// underlyingTCP returns the TCP connection a transport runs on, or nil.
func underlyingTCP(nc net.Conn) *net.TCPConn {
	switch c := nc.(type) {
	case *net.TCPConn:
		return c
	case *jumpedConn:
		return c.tcp
	}
	return nil
}

// jumpedConn is a connection to the target through jump hosts: a channel
// of the last jump host's connection. Closing it closes the jump hosts'
// connections too. Channels have no deadlines: a deadline here closes the
// whole path when it passes (see closingDeadline).
type jumpedConn struct {
	net.Conn
	via      []*ssh.Client // the jump hosts' connections, first to last
	tcp      *net.TCPConn  // the socket to the first jump host, if it is TCP
	deadline closingDeadline
}

func (j *jumpedConn) Close() error {
	j.deadline.stop()
	err := j.Conn.Close()
	j.closeVia()
	return err
}

// closeVia closes the jump hosts' connections, last first.
func (j *jumpedConn) closeVia() {
	for i := len(j.via) - 1; i >= 0; i-- {
		j.via[i].Close()
	}
}

func (j *jumpedConn) SetDeadline(t time.Time) error      { return j.deadline.set(t, j.Close) }
func (j *jumpedConn) SetReadDeadline(t time.Time) error  { return j.SetDeadline(t) }
func (j *jumpedConn) SetWriteDeadline(t time.Time) error { return j.SetDeadline(t) }

// closingDeadline is the deadline of a connection whose transport has none
// (a channel, a pipe): when it passes, the connection is closed, which
// fails every call on it. That is all ferry needs: it sets deadlines only
// to bound a handshake, or to end one on cancel, and gives the connection
// up either way.
type closingDeadline struct {
	mu sync.Mutex
	t  *time.Timer
}

// set arms the deadline at t (zero: none), calling closeFn when it passes.
func (d *closingDeadline) set(t time.Time, closeFn func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.t != nil {
		d.t.Stop()
		d.t = nil
	}
	if !t.IsZero() {
		d.t = time.AfterFunc(time.Until(t), func() { closeFn() })
	}
	return nil
}

// stop disarms the deadline.
func (d *closingDeadline) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.t != nil {
		d.t.Stop()
		d.t = nil
	}
}
