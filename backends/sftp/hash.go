package sftp

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// emptySHA256 is sha256sum's answer for /dev/null, used to learn whether the
// account may run it.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// Hash returns the hex SHA-256 of the file at p, computed on the server by
// an exec of sha256sum. Accounts that may not run commands (sftp-only) return
// an error wrapping backends.ErrUnsupported; that is learned once per
// Backend. A symlink is refused with ErrUnsupported. Cancelling ctx closes
// the command's session.
func (b *Backend) Hash(ctx context.Context, p string) (string, error) {
	var sum string
	err := b.do(ctx, "hash", p, func(c *conn) error {
		full, err := b.notLink(c, p)
		if err != nil {
			return err
		}
		sum, err = b.remoteHash(ctx, c, full)
		return err
	})
	return sum, err
}

func (b *Backend) remoteHash(ctx context.Context, c *conn, full string) (string, error) {
	if err := b.canExec(ctx, c); err != nil {
		return "", err
	}
	out, err := execOutput(ctx, c, "sha256sum -- "+shellQuote(full), 0)
	if err != nil {
		if !c.alive() {
			return "", err
		}
		// Most likely the file vanished; let the SFTP side say what it is.
		if _, serr := c.sftp.Lstat(full); serr != nil {
			return "", serr
		}
		return "", fmt.Errorf("sha256sum %s: %w", full, err)
	}
	return parseSum(out)
}

// canExec learns once whether the account may run commands (sha256sum, and
// touch for mtimes SFTP cannot carry), by hashing /dev/null.
func (b *Backend) canExec(ctx context.Context, c *conn) error {
	b.hashMu.Lock()
	defer b.hashMu.Unlock()
	switch b.hashState {
	case 1:
		return nil
	case 2:
		return fmt.Errorf("server cannot run sha256sum: %w", backends.ErrUnsupported)
	}
	out, err := execOutput(ctx, c, "sha256sum -- "+shellQuote("/dev/null"), b.cfg.DialTimeout)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && (!c.alive() || lostConn(err)) {
		return err // the link failed, not the command: ask again next time
	}
	if sum, perr := parseSum(out); err == nil && perr == nil && sum == emptySHA256 {
		b.hashState = 1
		b.log.Debug("server hashes files with sha256sum", "addr", b.cfg.addr)
		return nil
	}
	b.hashState = 2
	b.log.Info("server cannot run sha256sum; content checks fall back", "addr", b.cfg.addr, "err", err)
	return fmt.Errorf("server cannot run sha256sum: %w", backends.ErrUnsupported)
}

// execOutput runs cmd in a new session and returns its stdout. The session
// is closed when ctx ends or after timeout (if > 0), which ends the wait.
func execOutput(ctx context.Context, c *conn, cmd string, timeout time.Duration) ([]byte, error) {
	s, err := c.ssh.NewSession()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	var out bytes.Buffer
	s.Stdout = &out
	err = s.Run(cmd)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return out.Bytes(), err
}

// parseSum reads the hash from sha256sum's output, which starts with a
// backslash when the name needed escaping.
func parseSum(out []byte) (string, error) {
	s := strings.TrimPrefix(string(out), `\`)
	if len(s) < 64 {
		return "", fmt.Errorf("unexpected sha256sum output %q", out)
	}
	if _, err := hex.DecodeString(s[:64]); err != nil {
		return "", fmt.Errorf("unexpected sha256sum output %q", out)
	}
	return s[:64], nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
