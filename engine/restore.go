package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// RestoreVerifyWindow is how many bytes below the end of a local partial
// download are compared with the target before the download resumes: data
// written without fsync can be lost or zeroed at the tail by a crash.
const RestoreVerifyWindow = 4 << 20

// downloadBuffer is the size of each read of a download: 4 MiB restored
// 200 MiB over loopback SFTP in about 3 s, 1 MiB in 4.7 s (uploads: 2.4-2.8 s).
const downloadBuffer = 4 << 20

// RestoreOptions says what Restore copies and how.
type RestoreOptions struct {
	// Path is the file or directory on the target to restore; "" is all of
	// it. A directory lands in Dest/<its name>, the root's content in Dest.
	Path string
	// At, if not zero, restores the state at that time from the live tree
	// and VersionsDir (see the rules at pickAt); zero restores the live tree.
	At time.Time
	// VersionsDir is the backup_dir of the job, relative to the target root;
	// it is never restored as part of the live tree.
	VersionsDir string
	// Overwrite replaces existing local files; each one replaced is kept
	// aside as NAME.ferry-old-<stamp>. Without it an existing file that
	// differs is a Problem and stays as it is.
	Overwrite bool
	// Exec gives Transfers, Retries, Backoff, Sleep, Progress and Logger.
	Exec ExecOptions
	// Now tells the time for the names of files kept aside; nil: time.Now.
	Now func() time.Time
}

// RestoreReport says what Restore did.
type RestoreReport struct {
	Files, Links int
	// Unchanged counts local files already equal (size and mtime) to what
	// was to be restored; they are left alone.
	Unchanged int
	// Bytes were downloaded; Resumed were kept from earlier partials.
	Bytes, Resumed int64
	// KeptAside lists local files moved aside by Overwrite.
	KeptAside []string
	// Problems are the entries not restored, and unsafe names seen.
	Problems []Problem
}

// Restore copies from b to the local directory dest (created if missing):
// the live tree or the state at opts.At. Every name from the target is
// checked with CheckPath, and every write goes through an os.Root on dest,
// so nothing lands outside dest; a symlink is created only when its target
// stays inside dest. Files are downloaded to a partial name beside their
// final name, resumed from a verified offset, renamed into place with their
// mode and mtime, and retried per file with backoff. Files that fail are
// Problems and the rest goes on. err is non-nil when nothing could be done:
// dest cannot be opened, opts.Path exists nowhere (wrapping ErrNotExist),
// the target root cannot be listed, or ctx is cancelled (wrapping ctx.Err();
// partials are kept for the next attempt). Not safe to run twice at once
// on the same dest.
func Restore(ctx context.Context, b backends.Backend, dest string, opts RestoreOptions) (RestoreReport, error) {
	var rep RestoreReport
	if err := backends.CheckPath(opts.Path); err != nil {
		return rep, fmt.Errorf("restore %q: %w", opts.Path, err)
	}
	exec := opts.Exec.withDefaults()
	picks, problems, err := gatherPicks(ctx, b, opts)
	if err != nil {
		return rep, err
	}
	rep.Problems = problems
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return rep, fmt.Errorf("restore destination %s: %w", dest, err)
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return rep, fmt.Errorf("restore destination %s: %w", dest, err)
	}
	defer root.Close()
	r := &restorer{ctx: ctx, b: b, root: root, opts: opts, exec: exec, log: exec.Logger, rep: &rep}
	if r.opts.Now == nil {
		r.opts.Now = time.Now
	}
	r.run(picks)
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("restore: %w", err)
	}
	slices.SortFunc(rep.Problems, func(a, b Problem) int { return ComparePaths(a.Path, b.Path) })
	return rep, nil
}

// gatherPicks lists the live tree and, for opts.At, the versions folders
// below opts.Path, and decides what to restore.
func gatherPicks(ctx context.Context, b backends.Backend, opts RestoreOptions) ([]Pick, []Problem, error) {
	skip := ""
	if opts.VersionsDir != "" {
		switch {
		case opts.Path == "":
			skip = opts.VersionsDir
		case opts.Path == opts.VersionsDir || under(opts.Path, opts.VersionsDir):
			return nil, nil, fmt.Errorf("restore %s: inside the versions folder; name the path as it was backed up and give --at: %w", opts.Path, backends.ErrUnsafePath)
		}
	}
	_, base := backends.Split(opts.Path)
	// from maps stamp and place below dest to the path on the target.
	from := map[string]string{}
	var problems []Problem
	found := false
	// place moves a listing of treePath to its place below dest: a
	// directory's content below base, a file at base.
	place := func(stamp, treePath string, es []backends.FileInfo, lp []Problem, isDir bool) []backends.FileInfo {
		found = true
		problems = append(problems, lp...)
		for i, e := range es {
			src, dst := treePath, base
			if isDir {
				src, dst = joinRel(treePath, e.Path), joinRel(base, e.Path)
			}
			from[stamp+"\x00"+dst] = src
			es[i].Path = dst
		}
		return es
	}
	live, lp, isDir, err := listTree(ctx, b, opts.Path, skip)
	switch {
	case err == nil:
		live = place("", opts.Path, live, lp, isDir)
	case errors.Is(err, backends.ErrNotExist) && !opts.At.IsZero():
	default:
		return nil, nil, fmt.Errorf("restore %s: %w", opts.Path, err)
	}
	var trees []versionTree
	if !opts.At.IsZero() && opts.VersionsDir != "" {
		names, times, err := listStamps(ctx, b, opts.VersionsDir)
		if err != nil {
			return nil, nil, fmt.Errorf("restore: %w", err)
		}
		for i, n := range names {
			if !times[i].After(opts.At) {
				continue // replaced before At: never what was there at At
			}
			p := joinRel(backends.Join(opts.VersionsDir, n), opts.Path)
			es, vp, isDir, err := listTree(ctx, b, p, "")
			if errors.Is(err, backends.ErrNotExist) {
				continue
			}
			if err != nil {
				problems = append(problems, Problem{Path: p, Err: err})
				continue
			}
			trees = append(trees, versionTree{stamp: n, until: times[i], entries: place(n, p, es, vp, isDir)})
		}
	}
	if !found {
		return nil, nil, fmt.Errorf("restore %s: %w", opts.Path, backends.ErrNotExist)
	}
	picks := pickAt(live, trees, opts.At)
	for i := range picks {
		picks[i].From.Path = from[picks[i].Stamp+"\x00"+picks[i].Rel]
	}
	return picks, problems, nil
}

// restorer carries one Restore.
type restorer struct {
	ctx  context.Context
	b    backends.Backend
	root *os.Root
	opts RestoreOptions
	exec ExecOptions
	log  *slog.Logger

	mu  sync.Mutex
	rep *RestoreReport
}

func (r *restorer) problem(p string, err error) {
	r.log.Warn("restore failed", "path", p, "err", err)
	r.exec.Progress.FileFailed(p, err)
	r.mu.Lock()
	r.rep.Problems = append(r.rep.Problems, Problem{Path: p, Err: err})
	r.mu.Unlock()
}

// run restores picks: directories first, then files and links several at
// once, then the directories' modes and mtimes deepest first (writing into
// a directory changes its mtime).
func (r *restorer) run(picks []Pick) {
	var dirs, files []Pick
	var total int64
	for _, p := range picks {
		if err := backends.CheckPath(p.Rel); err != nil {
			r.problem(p.Rel, err)
			continue
		}
		if p.From.IsDir() {
			dirs = append(dirs, p)
			continue
		}
		files = append(files, p)
		total += p.From.Size
	}
	r.exec.Progress.Totals(len(files), total)
	for _, d := range dirs {
		if err := r.root.MkdirAll(filepath.FromSlash(d.Rel), 0o755); err != nil {
			r.problem(d.Rel, fmt.Errorf("mkdir: %w", err))
		}
	}
	ch := make(chan Pick)
	var wg sync.WaitGroup
	for range max(r.exec.Transfers, 1) {
		wg.Go(func() {
			for p := range ch {
				if r.ctx.Err() != nil {
					continue
				}
				var err error
				if p.From.IsSymlink() {
					err = r.link(p)
				} else if p.From.IsRegular() {
					err = r.fileWithRetry(p)
				} else {
					err = fmt.Errorf("%s: not a regular file, directory or symlink", p.From.Mode.Type())
				}
				if err != nil && r.ctx.Err() == nil {
					r.problem(p.Rel, err)
				}
			}
		})
	}
	for _, f := range files {
		ch <- f
	}
	close(ch)
	wg.Wait()
	for _, d := range slices.Backward(dirs) {
		rel := filepath.FromSlash(d.Rel)
		if err := r.root.Chmod(rel, d.From.Mode.Perm()|0o200); err != nil {
			r.log.Debug("chmod dir", "path", d.Rel, "err", err)
		}
		if err := r.root.Chtimes(rel, d.From.ModTime, d.From.ModTime); err != nil {
			r.log.Debug("chtimes dir", "path", d.Rel, "err", err)
		}
	}
}

// link creates a symlink whose target stays inside dest.
func (r *restorer) link(p Pick) error {
	t := p.From.LinkTarget
	dir, _ := backends.Split(p.Rel)
	if t == "" || strings.ContainsRune(t, 0) || path.IsAbs(t) || filepath.IsAbs(t) {
		return fmt.Errorf("symlink to %q points outside the destination: %w", t, backends.ErrUnsafePath)
	}
	if c := path.Clean(path.Join(dir, t)); c == ".." || strings.HasPrefix(c, "../") {
		return fmt.Errorf("symlink to %q points outside the destination: %w", t, backends.ErrUnsafePath)
	}
	rel := filepath.FromSlash(p.Rel)
	if err := r.mkParent(rel); err != nil {
		return err
	}
	if cur, err := r.root.Readlink(rel); err == nil && cur == t {
		r.count(func(rep *RestoreReport) { rep.Unchanged++ })
		return nil
	}
	if _, err := r.root.Lstat(rel); err == nil {
		if !r.opts.Overwrite {
			return fmt.Errorf("%s exists (use --overwrite): %w", p.Rel, fs.ErrExist)
		}
		if err := r.keepAside(rel); err != nil {
			return err
		}
	}
	if err := r.root.Symlink(t, rel); err != nil {
		return fmt.Errorf("symlink %s: %w", p.Rel, err)
	}
	r.count(func(rep *RestoreReport) { rep.Links++ })
	return nil
}

func (r *restorer) count(f func(*RestoreReport)) {
	r.mu.Lock()
	f(r.rep)
	r.mu.Unlock()
}

// mkParent makes the folders above rel. A failure is permanent: the
// destination refuses (an escape through a link, a file in the way, no
// permission), which waiting does not change.
func (r *restorer) mkParent(rel string) error {
	if dir := filepath.Dir(rel); dir != "." {
		if err := r.root.MkdirAll(dir, 0o755); err != nil {
			return backends.Permanent(fmt.Errorf("mkdir %s: %w", dir, err))
		}
	}
	return nil
}

// keepAside moves an existing local entry to NAME.ferry-old-<stamp>.
func (r *restorer) keepAside(rel string) error {
	aside := rel + ".ferry-old-" + r.opts.Now().UTC().Format(VersionStampFormat)
	for i := 1; ; i++ {
		if _, err := r.root.Lstat(aside); errors.Is(err, fs.ErrNotExist) {
			break
		}
		aside = fmt.Sprintf("%s.ferry-old-%s-%d", rel, r.opts.Now().UTC().Format(VersionStampFormat), i)
	}
	if err := r.root.Rename(rel, aside); err != nil {
		return fmt.Errorf("keep %s aside: %w", rel, err)
	}
	r.log.Info("kept existing file aside", "path", rel, "as", aside)
	r.count(func(rep *RestoreReport) { rep.KeptAside = append(rep.KeptAside, filepath.ToSlash(aside)) })
	return nil
}

// fileWithRetry downloads one file, retrying what is retryable with the
// backoff of ExecOptions; each attempt resumes the partial of the last.
func (r *restorer) fileWithRetry(p Pick) error {
	for attempt := 0; ; attempt++ {
		err := r.file(p)
		if err == nil || r.ctx.Err() != nil {
			return err
		}
		if backends.IsPermanent(err) || attempt >= r.exec.Retries {
			return err
		}
		d := r.exec.Backoff.Delay(attempt)
		if ra, ok := backends.RetryAfter(err); ok {
			d = ra
		}
		r.log.Info("retrying download", "path", p.Rel, "attempt", attempt+1, "in", d, "err", err)
		if err := r.exec.Sleep(r.ctx, d); err != nil {
			return err
		}
	}
}

// file downloads one file into place: partial, verified resume, check,
// atomic publish.
func (r *restorer) file(p Pick) error {
	rel := filepath.FromSlash(p.Rel)
	size, mtime := p.From.Size, p.From.ModTime
	if err := r.mkParent(rel); err != nil {
		return err
	}
	exists := false
	if fi, err := r.root.Lstat(rel); err == nil {
		if fi.Mode().IsRegular() && fi.Size() == size && fi.ModTime().Equal(mtime) {
			r.count(func(rep *RestoreReport) { rep.Unchanged++ })
			return nil
		}
		if !r.opts.Overwrite {
			return backends.Permanent(fmt.Errorf("%s exists and differs (use --overwrite): %w", p.Rel, fs.ErrExist))
		}
		exists = true
	}
	partial := filepath.FromSlash(backends.PartialName(p.Rel, size, mtime))
	f, err := r.root.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return backends.Permanent(fmt.Errorf("open partial of %s: %w", p.Rel, err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat partial of %s: %w", p.Rel, err)
	}
	var off int64
	if n := fi.Size(); n > 0 {
		ra := &remoteReaderAt{ctx: r.ctx, b: r.b, path: p.From.Path}
		off, err = backends.ResumeOffset(f, n, ra, size, RestoreVerifyWindow)
		ra.Close()
		if err != nil {
			return fmt.Errorf("verify partial of %s: %w", p.Rel, err)
		}
	}
	if err := f.Truncate(off); err != nil {
		return fmt.Errorf("truncate partial of %s: %w", p.Rel, err)
	}
	r.exec.Progress.FileStarted(p.Rel, size)
	if off > 0 {
		r.exec.Progress.Bytes(p.Rel, off)
	}
	var got int64
	if off < size {
		rc, err := r.b.Open(r.ctx, p.From.Path, off)
		if err != nil {
			return fmt.Errorf("open %s on target: %w", p.From.Path, err)
		}
		w := io.NewOffsetWriter(f, off)
		// Large reads let a remote target keep many requests in flight.
		buf := make([]byte, min(max(size-off, 1), downloadBuffer))
		got, err = io.CopyBuffer(&progressWriter{w: w, path: p.Rel, prog: r.exec.Progress}, io.LimitReader(rc, size-off), buf)
		rc.Close()
		if err != nil {
			return fmt.Errorf("download %s: %w", p.From.Path, err)
		}
	}
	if off+got != size {
		return backends.Retryable(fmt.Errorf("download %s: got %d of %d bytes: %w", p.From.Path, off+got, size, io.ErrUnexpectedEOF))
	}
	// The file must still be the one listed, or the bytes are a mix.
	if now, err := r.b.Stat(r.ctx, p.From.Path); err != nil {
		return fmt.Errorf("stat %s after download: %w", p.From.Path, err)
	} else if now.Size != size || !now.ModTime.Equal(mtime) {
		f.Truncate(0)
		return backends.Permanent(fmt.Errorf("%s changed on the target during the download: %w", p.From.Path, backends.ErrSourceChanged))
	}
	if err := f.Chmod(p.From.Mode.Perm()); err != nil {
		return fmt.Errorf("chmod %s: %w", p.Rel, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p.Rel, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", p.Rel, err)
	}
	if err := r.root.Chtimes(partial, mtime, mtime); err != nil {
		return fmt.Errorf("set mtime of %s: %w", p.Rel, err)
	}
	if exists {
		if err := r.keepAside(rel); err != nil {
			return backends.Permanent(err)
		}
	}
	if err := r.publish(partial, rel); err != nil {
		return backends.Permanent(fmt.Errorf("publish %s: %w", p.Rel, err))
	}
	r.removeStalePartials(rel)
	r.exec.Progress.FileDone(p.Rel, size, off)
	r.count(func(rep *RestoreReport) {
		rep.Files++
		rep.Bytes += got
		rep.Resumed += off
	})
	return nil
}

// publish moves partial to rel without ever replacing a file that appeared
// there meanwhile: a hard link fails if rel exists. Where links are not
// supported, a rename after a last check stands in.
func (r *restorer) publish(partial, rel string) error {
	err := r.root.Link(partial, rel)
	if err == nil {
		return r.root.Remove(partial)
	}
	if errors.Is(err, fs.ErrExist) {
		return err
	}
	if _, lerr := r.root.Lstat(rel); lerr == nil {
		return fmt.Errorf("%s: %w", rel, fs.ErrExist)
	}
	return r.root.Rename(partial, rel)
}

type progressWriter struct {
	w    io.Writer
	path string
	prog Progress
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if n > 0 {
		p.prog.Bytes(p.path, int64(n))
	}
	return n, err
}

// removeStalePartials removes partial downloads of rel left by restores of
// other versions of it (another size or mtime gives another partial name),
// once rel is in place. Failures only cost disk space and are logged.
func (r *restorer) removeStalePartials(rel string) {
	dir, name := filepath.Split(rel)
	if dir == "" {
		dir = "."
	}
	d, err := r.root.Open(dir)
	if err != nil {
		return
	}
	es, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return
	}
	const tagLen = 16 + 1 // hex tag and "-"
	for _, e := range es {
		n := e.Name()
		if !strings.HasPrefix(n, backends.PartialPrefix) || len(n) < len(backends.PartialPrefix)+tagLen ||
			n[len(backends.PartialPrefix)+tagLen:] != name || !e.Type().IsRegular() {
			continue
		}
		if err := r.root.Remove(filepath.Join(dir, n)); err != nil {
			r.log.Debug("remove stale partial", "path", filepath.Join(dir, n), "err", err)
		}
	}
}
