package sftp

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// ProxyCommand in the SSH config: as OpenSSH does, ferry runs the command
// with /bin/sh ("exec COMMAND", so no shell lingers) and speaks SSH over
// its standard input and output. It is how servers behind AWS Systems
// Manager, Cloudflare Access or an old-style `ssh -W` bastion are reached.
// The host key is still checked against known_hosts, under the name the
// command was asked to reach.

// expandProxyCommand replaces the tokens OpenSSH expands in a
// ProxyCommand: %h (the host name to reach), %p (its port), %r (the remote
// user), %n (the host as given) and %%.
func expandProxyCommand(cmd string, r *resolved) string {
	return strings.NewReplacer("%%", "%", "%h", r.Host, "%p", strconv.Itoa(r.Port),
		"%r", r.User, "%n", r.alias).Replace(cmd)
}

// cmdStderrMax bounds how much of a proxy command's standard error is kept
// for the error message when the connection through it fails.
const cmdStderrMax = 2 << 10

// dialCommand starts r's proxy command and returns a connection over its
// standard input and output.
func dialCommand(ctx context.Context, r *resolved) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("proxy command for %s: %w", r.addr, err)
	}
	cmd := exec.Command("/bin/sh", "-c", "exec "+r.proxyCommand)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A child that left the group with the command's standard error open
	// must not hold Wait (and so Close) once the command itself is gone.
	cmd.WaitDelay = 2 * time.Second
	c := &cmdConn{cmd: cmd, addr: r.addr, exited: make(chan struct{})}
	cmd.Stderr = &c.stderr
	// Pipes of ferry's own rather than exec's: exec closes its pipes once
	// the command exits, and bytes still in them would be lost.
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("proxy command for %s: %w", r.addr, err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("proxy command for %s: %w", r.addr, err)
	}
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("proxy command for %s: %w: %w", r.addr, backends.ErrUnreachable, err)
	}
	c.r, c.w = outR, inW
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// cmdConn is a connection over a proxy command's standard input and
// output. Close ends the command (SIGTERM to its process group, SIGKILL
// two seconds later) and waits for it. Pipes have no deadlines: a deadline
// here closes the connection when it passes (see closingDeadline).
type cmdConn struct {
	cmd     *exec.Cmd
	addr    string
	r       *os.File // the command's standard output
	w       *os.File // its standard input
	stderr  tailBuffer
	exited  chan struct{} // closed once the command has exited
	waitErr error         // how it exited, once exited is closed

	deadline  closingDeadline
	closeOnce sync.Once
}

func (c *cmdConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *cmdConn) Write(p []byte) (int, error) { return c.w.Write(p) }

func (c *cmdConn) Close() error {
	c.closeOnce.Do(func() {
		c.deadline.stop()
		c.w.Close()
		// Signals go to the command's process group only while the
		// command is not yet reaped: after that its id may be reused.
		pgid := c.cmd.Process.Pid
		select {
		case <-c.exited:
		default:
			syscall.Kill(-pgid, syscall.SIGTERM)
			select {
			case <-c.exited:
			case <-time.After(2 * time.Second):
				syscall.Kill(-pgid, syscall.SIGKILL)
				<-c.exited
			}
		}
		c.r.Close()
	})
	return nil
}

// explain adds to err how the proxy command ended and the end of what it
// wrote to standard error, if it has ended.
func (c *cmdConn) explain(err error) error {
	select {
	case <-c.exited:
	case <-time.After(100 * time.Millisecond):
		return err
	}
	how := "exited"
	if c.waitErr != nil {
		how = c.waitErr.Error()
	}
	if tail := strings.TrimSpace(c.stderr.String()); tail != "" {
		return fmt.Errorf("%w (proxy command %s: %s)", err, how, tail)
	}
	return fmt.Errorf("%w (proxy command %s)", err, how)
}

func (c *cmdConn) LocalAddr() net.Addr  { return dialledAddr("proxy-command") }
func (c *cmdConn) RemoteAddr() net.Addr { return dialledAddr(c.addr) }

func (c *cmdConn) SetDeadline(t time.Time) error      { return c.deadline.set(t, c.Close) }
func (c *cmdConn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *cmdConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

// explainVia is explain for the proxy command under nc, if there is one.
func explainVia(nc net.Conn, err error) error {
	if l, ok := nc.(*linkConn); ok {
		nc = l.Conn
	}
	if c, ok := nc.(*cmdConn); ok {
		return c.explain(err)
	}
	return err
}

// tailBuffer keeps the last cmdStderrMax bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - cmdStderrMax; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
