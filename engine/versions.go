package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// VersionStampFormat names the folder of one run's old versions: UTC, fixed
// width, so that names sort as times do (2026-11-25T161500Z).
const VersionStampFormat = "2006-01-02T150405Z"

// Keep says which version folders pruning leaves: the newest Count, or those
// younger than Age. Both zero keeps all.
type Keep struct {
	Count int
	Age   time.Duration
}

// Versions turns on old versions in backup mode: before a file is
// overwritten, and instead of leaving a file the source lacks, the target's
// copy is moved (a server-side rename) to Dir/<stamp>/<path>, one stamp per
// run. Dir is relative to the target root and is never planned.
type Versions struct {
	Dir  string
	Keep Keep
	// Now tells the time for the stamp and for pruning by age; nil means
	// time.Now.
	Now func() time.Time
}

func (v *Versions) now() time.Time {
	if v.Now != nil {
		return v.Now().UTC()
	}
	return time.Now().UTC()
}

// listStamps returns the version folders under dir, oldest first, with
// their times; entries whose names are not stamps are not ferry's and are
// left out. A missing dir has none.
func listStamps(ctx context.Context, b backends.Backend, dir string) ([]string, []time.Time, error) {
	list, err := b.List(ctx, dir)
	if errors.Is(err, backends.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("list versions %s: %w", dir, err)
	}
	var names []string
	for _, e := range list {
		_, name := backends.Split(e.Path)
		if _, err := time.Parse(VersionStampFormat, name); err == nil && e.IsDir() {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	times := make([]time.Time, len(names))
	for i, n := range names {
		times[i], _ = time.Parse(VersionStampFormat, n)
	}
	return names, times, nil
}

// nextStamp returns the stamp of a run starting at now: now in whole
// seconds, or one second after the newest folder already there, so two runs
// in one second never share (and overwrite) a folder.
func nextStamp(now time.Time, existing []time.Time) string {
	t := now.UTC().Truncate(time.Second)
	if n := len(existing); n > 0 && !existing[n-1].Before(t) {
		t = existing[n-1].Add(time.Second)
	}
	return t.Format(VersionStampFormat)
}

// PruneStamps decides which version folders go: names are stamps, and the
// result keeps the newest keep.Count of them, or drops those older than
// keep.Age at now. A zero Keep drops none. Pure; names need not be sorted.
func PruneStamps(names []string, keep Keep, now time.Time) []string {
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	var drop []string
	switch {
	case keep.Count > 0:
		if len(sorted) > keep.Count {
			drop = sorted[:len(sorted)-keep.Count]
		}
	case keep.Age > 0:
		for _, n := range sorted {
			t, err := time.Parse(VersionStampFormat, n)
			if err == nil && now.Sub(t) > keep.Age {
				drop = append(drop, n)
			}
		}
	}
	return drop
}

// PruneVersions removes the version folders under dir that keep does not
// keep (see PruneStamps) and returns their names. It stops at the first
// failure, returning what it removed so far and the error; cancel behaves
// the same. Names that are not stamps are never touched.
func PruneVersions(ctx context.Context, b backends.Backend, dir string, keep Keep, now time.Time) ([]string, error) {
	if keep == (Keep{}) {
		return nil, nil
	}
	names, _, err := listStamps(ctx, b, dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, n := range PruneStamps(names, keep, now) {
		if err := removeAll(ctx, b, backends.Join(dir, n)); err != nil {
			return removed, fmt.Errorf("prune %s: %w", backends.Join(dir, n), err)
		}
		removed = append(removed, n)
	}
	return removed, nil
}

// removeAll removes path and all it holds, deepest first.
func removeAll(ctx context.Context, b backends.Backend, path string) error {
	fi, err := b.Stat(ctx, path)
	if errors.Is(err, backends.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		list, err := b.List(ctx, path)
		if err != nil {
			return err
		}
		for _, e := range list {
			if err := removeAll(ctx, b, e.Path); err != nil {
				return err
			}
		}
	}
	if err := b.Remove(ctx, path); err != nil && !errors.Is(err, backends.ErrNotExist) {
		return err
	}
	return nil
}

// versionKeeper wraps a target for one run of a backup with versions: the
// first Upload to a path whose old file the plan replaces moves that file
// into the run's folder first, so the old content is safe before the new
// one is published. A move that fails fails the upload permanently: the
// old file stays where it was. Safe for concurrent use.
type versionKeeper struct {
	backends.Backend
	dir   string // <versions>/<stamp>
	opts  ExecOptions
	log   *slog.Logger
	mu    sync.Mutex
	dirs  map[string]bool // folders already made in dir
	owed  map[string]bool // paths whose old file is still to be moved
	moved int
}

func newVersionKeeper(b backends.Backend, dir string, plan Plan, opts ExecOptions) *versionKeeper {
	k := &versionKeeper{Backend: b, dir: dir, opts: opts.withDefaults(), dirs: map[string]bool{}, owed: map[string]bool{}}
	k.log = k.opts.Logger
	for _, op := range plan.Ops {
		if op.Kind == OpUpload && op.Dst != nil && op.Dst.IsRegular() {
			k.owed[op.Path] = true
		}
	}
	return k
}

// Unwrap lets capabilities of the target be found through the keeper.
func (k *versionKeeper) Unwrap() backends.Backend { return k.Backend }

// Upload moves the old file away first when the plan replaces one.
func (k *versionKeeper) Upload(ctx context.Context, path string, src backends.Source) (backends.UploadResult, error) {
	k.mu.Lock()
	owed := k.owed[path]
	k.mu.Unlock()
	if owed {
		if err := k.keep(ctx, path); err != nil {
			if ctx.Err() != nil {
				return backends.UploadResult{}, err
			}
			return backends.UploadResult{}, backends.Permanent(fmt.Errorf("keep old version of %s: %w", path, err))
		}
		k.mu.Lock()
		delete(k.owed, path)
		k.mu.Unlock()
	}
	return k.Backend.Upload(ctx, path, src)
}

// keep moves the target's path into the run's folder, with retries. A path
// that is no longer there has nothing to keep.
func (k *versionKeeper) keep(ctx context.Context, path string) error {
	to := backends.Join(k.dir, path)
	parent, _ := backends.Split(to)
	for attempt := 0; ; attempt++ {
		err := k.mkdir(ctx, parent)
		if err == nil {
			err = k.Backend.Rename(ctx, path, to)
			if errors.Is(err, backends.ErrNotExist) {
				if _, serr := k.Backend.Stat(ctx, path); errors.Is(serr, backends.ErrNotExist) {
					return nil
				}
			}
		}
		if err == nil {
			k.mu.Lock()
			k.moved++
			k.mu.Unlock()
			k.log.Debug("kept old version", "path", path, "to", to)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if backends.IsPermanent(err) || attempt >= k.opts.Retries {
			return err
		}
		if err := k.opts.Sleep(ctx, k.opts.Backoff.Delay(attempt)); err != nil {
			return err
		}
	}
}

func (k *versionKeeper) mkdir(ctx context.Context, dir string) error {
	k.mu.Lock()
	done := k.dirs[dir]
	k.mu.Unlock()
	if done {
		return nil
	}
	if err := k.Backend.Mkdir(ctx, dir); err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	k.mu.Lock()
	k.dirs[dir] = true
	k.mu.Unlock()
	return nil
}

// archive runs the plan's OpArchive ops, several at once. They move paths
// the source lacks, which no other op of the plan touches, so they run
// before the rest of the plan; what fails is a Problem.
func (k *versionKeeper) archive(ctx context.Context, ops []Op) []Problem {
	var (
		mu       sync.Mutex
		problems []Problem
		wg       sync.WaitGroup
	)
	ch := make(chan Op)
	for range min(len(ops), 8) {
		wg.Go(func() {
			for op := range ch {
				if ctx.Err() != nil {
					continue
				}
				if err := k.keep(ctx, op.Path); err != nil && ctx.Err() == nil {
					k.log.Warn("failed", "path", op.Path, "err", err)
					mu.Lock()
					problems = append(problems, Problem{Path: op.Path, Err: fmt.Errorf("archive: %w", err)})
					mu.Unlock()
				}
			}
		})
	}
	for _, op := range ops {
		ch <- op
	}
	close(ch)
	wg.Wait()
	return problems
}

func (k *versionKeeper) movedCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.moved
}

var _ backends.Wrapper = (*versionKeeper)(nil)
