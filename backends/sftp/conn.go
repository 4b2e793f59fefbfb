package sftp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// cipherPreference puts the AEAD ciphers first: on hardware with AES
// instructions aes128-gcm costs the least CPU per byte, and chacha20 is the
// fast choice elsewhere; both skip the separate MAC pass of the CTR modes.
var cipherPreference = []string{
	"aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com",
	"aes128-ctr", "aes192-ctr", "aes256-ctr",
}

// conn is one SSH connection with its SFTP session and keepalive.
type conn struct {
	id       int
	net      *linkConn
	ssh      *ssh.Client
	sftp     *sftp.Client
	raw      *rawSession   // nil when the server refused a second session
	dead     chan struct{} // closed once the connection is gone
	deadOnce sync.Once
	why      atomic.Value // string: why it died
	wg       sync.WaitGroup
	dirs     sync.Map // full paths of directories checked to be no symlinks

	posixRename bool
	statVFS     bool

	rtt atomic.Int64 // shortest round trip seen (ns); 0 before the first
}

// noteRTT records one round trip.
func (c *conn) noteRTT(d time.Duration) {
	for {
		old := c.rtt.Load()
		if old != 0 && old <= int64(d) || c.rtt.CompareAndSwap(old, max(1, int64(d))) {
			return
		}
	}
}

// minRTT is the shortest round trip seen, or the longest duration while
// none was.
func (c *conn) minRTT() time.Duration {
	if r := c.rtt.Load(); r != 0 {
		return time.Duration(r)
	}
	return time.Duration(math.MaxInt64)
}

// alive reports whether the connection is still usable.
func (c *conn) alive() bool {
	select {
	case <-c.dead:
		return false
	default:
		return true
	}
}

// abandon kills a connection that failed (no keepalive answer, a stalled
// upload, a lost session). Its socket is reset rather than closed: a plain
// close would leave the kernel retransmitting the unsent writes of an
// abandoned upload, and should the link come back they would reach the
// server after a retry on a new connection had already published the file
// they belong to.
func (c *conn) abandon(why string) {
	if c.net != nil {
		if tc := underlyingTCP(c.net.Conn); tc != nil {
			tc.SetLinger(0)
		}
	}
	c.kill(why)
}

// kill closes the connection, which fails every call waiting on it at once.
func (c *conn) kill(why string) {
	c.deadOnce.Do(func() {
		c.why.Store(why)
		close(c.dead)
	})
	if c.ssh != nil {
		c.ssh.Close()
	}
}

func (c *conn) reason() string {
	if s, ok := c.why.Load().(string); ok {
		return s
	}
	return "connection lost"
}

// dial opens one connection: TCP (bounded by DialTimeout and ctx), the SSH
// handshake and the SFTP session (bounded together by a deadline on the
// socket, since the handshake has no timeout of its own), then starts the
// keepalive.
func (b *Backend) dial(ctx context.Context, id int) (*conn, error) {
	r := b.cfg
	nc, err := b.dialPath(ctx, r)
	if err != nil {
		return nil, err
	}
	link := newLinkConn(nc)
	nc = link
	nc.SetDeadline(time.Now().Add(r.DialTimeout))
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	client, err := b.handshake(ctx, nc, r, b.hk, b.keys)
	if err != nil {
		err = explainVia(nc, err)
		nc.Close()
		return nil, err
	}
	opts := []sftp.ClientOption{
		sftp.MaxConcurrentRequestsPerFile(r.RequestsInFlight),
		sftp.UseConcurrentReads(true),
	}
	if r.ChunkSize <= 32<<10 {
		opts = append(opts, sftp.MaxPacketChecked(r.ChunkSize))
	} else {
		opts = append(opts, sftp.MaxPacketUnchecked(r.ChunkSize))
	}
	sc2, err := sftp.NewClient(client, opts...)
	if err != nil {
		client.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sftp session on %s: %w", r.addr, ctx.Err())
		}
		return nil, fmt.Errorf("sftp session on %s: %w: %w", r.addr, backends.ErrUnreachable, err)
	}
	c := &conn{id: id, ssh: client, sftp: sc2, dead: make(chan struct{}), net: link}
	c.raw, err = openRawSession(client, &c.wg)
	if errors.Is(err, errNoRawSession) {
		b.log.Warn("server allows one sftp session per connection: new partial files start with its default mode until made private",
			"addr", r.addr, "err", err)
	} else if err != nil {
		client.Close()
		c.wg.Wait()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sftp upload session on %s: %w", r.addr, ctx.Err())
		}
		return nil, fmt.Errorf("sftp upload session on %s: %w: %w", r.addr, backends.ErrUnreachable, err)
	}
	if !stop() {
		client.Close()
		c.wg.Wait()
		return nil, fmt.Errorf("sftp session on %s: %w", r.addr, ctx.Err())
	}
	nc.SetDeadline(time.Time{})
	_, c.posixRename = sc2.HasExtension("posix-rename@openssh.com")
	_, c.statVFS = sc2.HasExtension("statvfs@openssh.com")
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		err := client.Wait()
		why := "connection closed"
		if err != nil {
			why = "connection closed: " + err.Error()
		}
		c.deadOnce.Do(func() { c.why.Store(why); close(c.dead) })
	}()
	go func() {
		defer c.wg.Done()
		b.keepalive(c)
	}()
	b.log.Debug("sftp connected", "addr", r.addr, "user", r.User, "conn", id,
		"posix-rename", c.posixRename, "statvfs", c.statVFS)
	return c, nil
}

// handshake runs the SSH handshake with r's server over nc: its host key
// checked against hk, then authentication with k's keys, ssh-agent's and
// the password. The caller bounds it with a deadline on nc. A host key
// refused or credentials refused wrap backends.ErrAuth; anything else
// (the link broke off) wraps backends.ErrUnreachable.
func (b *Backend) handshake(ctx context.Context, nc net.Conn, r *resolved, hk *hostKeys, k *keys) (*ssh.Client, error) {
	methods, closeAgent, err := k.authMethods(r)
	if err != nil {
		return nil, err
	}
	defer closeAgent()
	var hostErr error
	hostOK := false
	check := hk.callback(func(msg string, args ...any) { b.log.Warn(msg, args...) }, &hostErr)
	// The name the host key is known by: HostKeyAlias, as OpenSSH uses it
	// (no port added), else the address dialled.
	known := r.addr
	if r.hostKeyAlias != "" {
		known = net.JoinHostPort(r.hostKeyAlias, "22")
	}
	cc := &ssh.ClientConfig{
		User: r.User,
		Auth: methods,
		HostKeyCallback: func(_ string, a net.Addr, key ssh.PublicKey) error {
			if ta, ok := a.(*net.TCPAddr); !ok || ta.IP.IsUnspecified() || r.hostKeyAlias != "" {
				// A custom Dial (a proxy, a pipe) or a jump host's channel
				// has no meaningful remote address; the key is checked
				// against the name it is known by.
				a = dialledAddr(known)
			}
			err := check(known, a, key)
			hostOK = err == nil
			return err
		},
		HostKeyAlgorithms: hk.algorithms(known),
		Timeout:           r.DialTimeout,
		Config:            ssh.Config{Ciphers: cipherPreference},
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, r.addr, cc)
	if err != nil {
		switch {
		case hostErr != nil:
			return nil, hostErr
		case ctx.Err() != nil:
			return nil, fmt.Errorf("ssh handshake with %s: %w", r.addr, ctx.Err())
		case hostOK && !isNetErr(err):
			if k.note != "" {
				return nil, fmt.Errorf("ssh %s@%s: %s: %w: %w", r.User, r.addr, k.note, backends.ErrAuth, err)
			}
			return nil, fmt.Errorf("ssh %s@%s: %w: %w", r.User, r.addr, backends.ErrAuth, err)
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w: %w", r.addr, backends.ErrUnreachable, err)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// keepalive sends keepalive@openssh.com every interval and closes the
// connection once nothing came from the server (no keepalive answer, no
// other byte) for KeepaliveMaxMissed intervals. Any byte counts, as in
// OpenSSH: on a saturated link the answer queues behind megabytes of data
// while the server's replies show it alive. Each request runs in its own
// goroutine raced against the clock, because a request on a dead link
// blocks (and blocks the next one) until the connection is closed; closing
// is what frees them all.
func (b *Backend) keepalive(c *conn) {
	iv, n := b.cfg.KeepaliveInterval, b.cfg.KeepaliveMaxMissed
	t := time.NewTicker(iv)
	defer t.Stop()
	answered := make(chan time.Time, 1)
	pending := false
	lastAlive := time.Now()
	for {
		select {
		case <-c.dead:
			return
		case at := <-answered:
			pending = false
			if at.After(lastAlive) {
				lastAlive = at
			}
			continue
		case <-t.C:
		}
		if heard := time.Unix(0, c.net.last.Load()); heard.After(lastAlive) {
			lastAlive = heard
		}
		if pending {
			if time.Since(lastAlive) >= iv*time.Duration(n)-iv/10 {
				b.log.Warn("sftp connection dead: no keepalive answer", "addr", b.cfg.addr, "conn", c.id,
					"silent_for", time.Since(lastAlive).Round(time.Millisecond), "interval", iv, "max_missed", n)
				c.abandon(fmt.Sprintf("no keepalive answer for %s", time.Since(lastAlive).Round(time.Millisecond)))
				return
			}
			continue
		}
		pending = true
		sent := time.Now()
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			// A refusal (ok=false) is an answer all the same; only an error
			// means the connection is gone, which Wait reports.
			if _, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil); err == nil {
				select {
				case answered <- sent:
				case <-c.dead:
				}
			}
		}()
	}
}

// dialledAddr is the address a connection was asked for, standing in for
// the remote address of a transport that has none.
type dialledAddr string

func (a dialledAddr) Network() string { return "tcp" }
func (a dialledAddr) String() string  { return string(a) }

// isNetErr reports whether err comes from the transport rather than the peer's
// answer: the handshake or session broke off.
func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrDeadlineExceeded) || isEOF(err)
}

// slot is one place in the connection pool, rebuilt on use after a loss.
type slot struct {
	mu      sync.Mutex
	c       *conn
	cur     atomic.Pointer[conn] // c, readable without mu
	warming atomic.Bool          // a background dial of this slot is under way
}

// conn returns the live connection of slot i, dialling it first if it is
// missing or dead.
func (b *Backend) connAt(ctx context.Context, i int) (*conn, error) {
	if b.closed.Load() {
		return nil, errClosed
	}
	s := &b.slots[i%len(b.slots)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil && s.c.alive() {
		return s.c, nil
	}
	replacing := s.c != nil
	if replacing {
		b.log.Info("sftp reconnecting", "addr", b.cfg.addr, "conn", i, "after", s.c.reason())
		s.c.kill("replaced")
		s.c.wg.Wait()
		s.c = nil
		s.cur.Store(nil)
	}
	c, err := b.dial(ctx, i)
	if err != nil {
		return nil, err
	}
	if b.closed.Load() {
		c.kill("backend closed")
		c.wg.Wait()
		return nil, errClosed
	}
	s.c = c
	s.cur.Store(c)
	if replacing && b.cfg.OnReconnect != nil {
		b.cfg.OnReconnect()
	}
	return c, nil
}

// get returns a live connection, spreading callers over the pool. A slot
// without a live connection is dialled in the background while another
// live one serves the caller, and only while calls overlap (a lone listing
// or stat between small uploads is no reason for another connection): the
// pool grows (or heals) only as calls overlap, and no call waits for a
// dial while a connection is up.
func (b *Backend) get(ctx context.Context) (*conn, error) {
	i := int(b.rr.Add(1)) % len(b.slots)
	if c := b.slots[i].peek(); c != nil && c.alive() {
		return c, nil
	}
	for j := 1; j < len(b.slots); j++ {
		if c := b.slots[(i+j)%len(b.slots)].peek(); c != nil && c.alive() {
			if b.calls.Load() > 1 {
				b.warm(i)
			}
			return c, nil
		}
	}
	return b.connAt(ctx, i)
}

// first returns the pool's first connection while it is live, for small
// uploads: they cost the link little, and the fewer sessions carry them,
// the more of their requests share each channel write (and each of the
// server's wake-ups), which on a fast link is what bounds them. Otherwise
// it is get.
func (b *Backend) first(ctx context.Context) (*conn, error) {
	if c := b.slots[0].peek(); c != nil && c.alive() {
		return c, nil
	}
	return b.get(ctx)
}

// warm dials slot i in the background unless a dial of it is under way.
// Close cancels it and waits for it.
func (b *Backend) warm(i int) {
	s := &b.slots[i]
	if !s.warming.CompareAndSwap(false, true) {
		return
	}
	b.warmWG.Add(1)
	go func() {
		defer b.warmWG.Done()
		defer s.warming.Store(false)
		if _, err := b.connAt(b.warmCtx, i); err != nil {
			b.log.Debug("sftp background dial failed", "addr", b.cfg.addr, "conn", i, "err", err)
		}
	}()
}

var errClosed = backends.Permanent(errors.New("sftp backend is closed"))

// peek returns the slot's connection without dialling; nil if there is none.
func (s *slot) peek() *conn {
	return s.cur.Load()
}
