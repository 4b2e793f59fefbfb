package sftp

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/ferrysync/ferry/backends"
	"github.com/pkg/sftp"
)

// A resumed upload never writes into, or renames over, a partial that an
// earlier attempt wrote: that attempt's session may still hold it open,
// and requests of an abandoned connection, held in a relay or a socket
// buffer, reach the server whenever they arrive and are applied then,
// through its handles and by its names. So the verified prefix is copied,
// on the server, into a new partial whose name belongs to this attempt
// alone, and the upload writes and publishes that one. What an earlier
// session holds open, or renames late, is never the file this attempt
// publishes: a late write lands in a file nobody reads, a late rename moves
// a name this attempt does not use. The copy is the server's disk work
// alone (no byte crosses the network). The next resume looks at the
// partial and every copy of it, resumes from the one with the longest
// verified prefix, and the partials of an upload are all removed once it
// is published.

// canCopy reports whether the connection can resume by a server-side copy.
func (u *upload) canCopy() bool {
	rs := u.c.raw
	return rs != nil && rs.copyData
}

// partialInfo is a partial file of this upload found on the target, and
// the length of its prefix that matches the source.
type partialInfo struct {
	name     string // full path
	size     int64
	verified int64
}

// resumeByCopy resumes from the best partial of the upload: the one at its
// partial name or a copy an earlier resume made. It copies that one's
// verified prefix into a new owner-only partial with a name of its own,
// makes that the upload's partial, removes the earlier copies (the partial
// itself goes once the file is published, see dropStale) and returns a
// handle on it and the prefix's length.
func (u *upload) resumeByCopy() (*sftp.File, int64, error) {
	c := u.c
	found, err := u.partials()
	if err != nil {
		return nil, 0, err
	}
	best, err := u.bestPartial(found)
	if err != nil {
		return nil, 0, err
	}
	tmp, err := copyName(u.partial)
	if err != nil {
		return nil, 0, err
	}
	if err := u.copyPrefix(best, tmp); err != nil {
		if c.alive() {
			c.sftp.Remove(tmp)
		}
		return nil, 0, err
	}
	f, err := c.sftp.OpenFile(tmp, os.O_RDWR)
	if err != nil {
		if c.alive() {
			c.sftp.Remove(tmp)
		}
		return nil, 0, fmt.Errorf("open %s after the copy: %w", tmp, err)
	}
	// The new copy holds all any earlier copy could give a later resume:
	// those go now, so that attempts cut again and again leave one copy
	// each at most. The partial stays until the file is published, as it
	// is what a later attempt finds first.
	var copies []string
	u.stale = u.stale[:0]
	for _, p := range found {
		if p.name == u.partial {
			u.stale = append(u.stale, p.name)
		} else {
			copies = append(copies, p.name)
		}
	}
	u.removeOn(c, copies)
	u.b.log.Debug("resume by server-side copy", "path", u.p, "from", path.Base(best.name), "to", path.Base(tmp),
		"copied", best.verified, "partials", len(found))
	u.partial = tmp
	return f, best.verified, nil
}

// partials lists the partial files of the upload in its directory: the one
// at its partial name and the copies of it (see copyName).
func (u *upload) partials() ([]partialInfo, error) {
	dir, base := path.Split(u.partial)
	key, ok := backends.PartialKey(u.partial)
	if !ok {
		return nil, fmt.Errorf("partial name %s has no tag", base)
	}
	key = path.Base(key)
	ents, err := u.c.sftp.ReadDir(path.Clean(dir))
	if err != nil {
		return nil, fmt.Errorf("list %s for partials: %w", dir, err)
	}
	var found []partialInfo
	for _, e := range ents {
		n := e.Name()
		if (n == base || strings.HasPrefix(n, key+".")) && e.Mode().IsRegular() {
			found = append(found, partialInfo{name: dir + n, size: e.Size()})
		}
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("partial %s: %w", u.partial, fs.ErrNotExist)
	}
	return found, nil
}

// bestPartial returns the partial with the longest prefix that matches the
// source. Partials are read from the largest down, and one no larger than
// the best prefix so far is not read at all.
func (u *upload) bestPartial(found []partialInfo) (partialInfo, error) {
	slices.SortFunc(found, func(a, b partialInfo) int { return cmp.Compare(b.size, a.size) })
	window := u.b.window()
	best := partialInfo{verified: -1}
	for _, p := range found {
		if min(p.size, u.src.Size()) <= best.verified {
			break
		}
		f, err := u.c.sftp.Open(p.name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return best, fmt.Errorf("open %s: %w", p.name, err)
		}
		p.verified, err = backends.ResumeOffset(f, p.size, u.src, u.src.Size(), window)
		f.Close()
		if err != nil {
			return best, err
		}
		if p.verified > best.verified {
			best = p
		}
	}
	if best.verified < 0 {
		return best, fmt.Errorf("partial %s: %w", u.partial, fs.ErrNotExist)
	}
	return best, nil
}

// copyPrefix creates tmp, owner-only and exclusive (never an existing file,
// never through a planted link), holding the first from.verified bytes of
// from, copied on the server.
func (u *upload) copyPrefix(from partialInfo, tmp string) error {
	rs := u.c.raw
	off := from.verified
	wr := rs.open(tmp, fxfRead|fxfWrite|fxfCreat|fxfExcl, rawAttrs{flags: attrPerm, perm: 0o600})
	var rd *rawCall
	if off > 0 {
		rd = rs.open(from.name, fxfRead, rawAttrs{})
	}
	rs.flush()
	wh, werr := wr.handle()
	var rh string
	var rerr error
	if rd != nil {
		rh, rerr = rd.handle()
	}
	if werr != nil {
		if rd != nil && rerr == nil {
			(&rawFile{rs: rs, h: rh}).release()
		}
		return fmt.Errorf("create %s: %w", tmp, werr)
	}
	w := &rawFile{rs: rs, h: wh}
	if rerr != nil {
		w.release()
		return fmt.Errorf("open %s: %w", from.name, rerr)
	}
	var r *rawFile
	if rd != nil {
		r = &rawFile{rs: rs, h: rh}
		// Length 0 would mean "to the end", which is not what is wanted.
		cp := rs.copyRange(rh, 0, uint64(off), wh, 0)
		rs.flush()
		if err := cp.status(); err != nil {
			r.release()
			w.release()
			return fmt.Errorf("copy %d bytes of %s to %s on the server: %w", off, from.name, tmp, err)
		}
	}
	// The copy answers EOF when the source ends early (a late truncate of
	// an earlier session): the size says whether it is whole.
	st := rs.fstat(wh)
	var rc *rawCall
	if r != nil {
		rc = r.queueClose()
	}
	wc := w.queueClose()
	rs.flush()
	a, serr := st.attrs()
	if rc != nil {
		rc.status() // a read handle: nothing to learn from its close
	}
	cerr := wc.status()
	switch {
	case serr != nil:
		return fmt.Errorf("stat %s: %w", tmp, serr)
	case int64(a.size) != off:
		return fmt.Errorf("copy of %s holds %d bytes, want %d", from.name, a.size, off)
	case cerr != nil:
		return fmt.Errorf("close %s: %w", tmp, cerr)
	}
	return nil
}

// dropStale removes the partials the upload resumed from, once it no
// longer needs them (published, or given up for good). They are useless
// now, so a connection lost meanwhile is replaced for them once; whatever
// is left after that is removed by the next resume or by the retention of
// partials.
func (u *upload) dropStale(ctx context.Context) {
	if len(u.stale) == 0 {
		return
	}
	left := u.removeOn(u.c, u.stale)
	if len(left) > 0 && ctx.Err() == nil {
		if c, err := u.b.get(ctx); err == nil {
			left = u.removeOn(c, left)
		}
	}
	if len(left) > 0 {
		u.b.log.Debug("partials resumed from are left for a later run", "path", u.p, "partials", len(left))
	}
	u.stale = nil
}

// removeOn removes names over c and returns those it could not reach.
func (u *upload) removeOn(c *conn, names []string) (left []string) {
	if !c.alive() {
		return names
	}
	errs := make([]error, len(names))
	if rs := c.raw; rs != nil {
		calls := make([]*rawCall, len(names))
		for i, p := range names {
			calls[i] = rs.remove(p)
		}
		rs.flush()
		for i, call := range calls {
			errs[i] = call.status()
		}
	} else {
		for i, p := range names {
			errs[i] = c.sftp.Remove(p)
		}
	}
	for i, err := range errs {
		switch {
		case err == nil || errors.Is(err, fs.ErrNotExist):
		case !c.alive() || errors.Is(err, sftp.ErrSSHFxConnectionLost):
			left = append(left, names[i])
		default:
			u.b.log.Debug("remove a partial resumed from", "partial", names[i], "err", err)
		}
	}
	return left
}

// copyName returns a new name for a copy of partial: in its directory, with
// its key, a random nonce, and the rest of its name, so that no other
// attempt, this process's or an earlier one's, ever uses it.
func copyName(partial string) (string, error) {
	dir, base := path.Split(partial)
	key, ok := backends.PartialKey(partial)
	if !ok || base[len(path.Base(key))] != '-' {
		return "", fmt.Errorf("partial name %s has no tag", base)
	}
	key = path.Base(key)
	var nonce [4]byte
	rand.Read(nonce[:])
	prefix := key + "." + hex.EncodeToString(nonce[:])
	rest := base[len(key):] // "-" and the file's name
	if max := backends.MaxNameLen - len(prefix); len(rest) > max {
		rest = rest[:max]
		for len(rest) > 0 && !utf8.ValidString(rest) {
			rest = rest[:len(rest)-1]
		}
	}
	return dir + prefix + rest, nil
}

// copyFailed reports whether a failed copy leaves the connection usable,
// so that resuming in place can still be tried.
func copyFailed(c *conn, err error) bool {
	return c.alive() && !errors.Is(err, sftp.ErrSSHFxConnectionLost)
}
