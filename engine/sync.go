package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// ErrSourceRoot says the source directory itself is missing, unreadable or
// not a directory; nothing was planned, so nothing was deleted.
var ErrSourceRoot = errors.New("source root unusable")

// SyncOptions says what Sync does. Source and Target are required.
type SyncOptions struct {
	// Source is the local directory to copy from.
	Source string
	// Target is where it goes; Sync does not close it.
	Target backends.Backend
	// Open, when Target is nil, opens the target while the source is
	// walked; the backend it returns is closed before Sync returns. Its
	// error ends the run, wrapped.
	Open func(ctx context.Context) (backends.Backend, error)
	Mode Mode
	// Excludes are gitignore-style patterns (see NewFilter); excluded paths
	// are neither copied nor deleted.
	Excludes []string
	// Checksum compares files of equal size by SHA-256 as well.
	Checksum bool
	// MaxDelete caps the deletes of one run; a negative value means no cap.
	MaxDelete int
	// ModifyWindow is how far two mtimes may differ and count as equal.
	ModifyWindow time.Duration
	// DryRun plans and returns the plan without changing anything.
	DryRun bool
	// Exec tunes the transfer; its Partials field is filled by Sync.
	Exec ExecOptions
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// State, when set, stands in for the listing of the target where it
	// can be trusted, is kept up to date by the run, and turns renames into
	// moves (see StateSync). A dry run ignores it.
	State *StateSync
}

// Sync makes the target match the source directory: it scans the source,
// lists the target (or reads its state), hashes equal-size candidates when
// Checksum is set, plans, and executes the plan (unless DryRun). It is
// SyncTargets with one target.
//
// The error is for failures of the whole run: an unusable source root (wraps
// ErrSourceRoot), bad exclude patterns, a target that cannot be listed (the
// backend's class, such as backends.ErrUnreachable or backends.ErrAuth, stays
// in the chain), or cancellation (ctx.Err()). Failures of single paths do not
// make an error; they are in the report's Problems. The report is filled as
// far as the run got. Sync is safe to run concurrently for different
// targets; on cancel it returns promptly and leaves partial uploads to be
// resumed.
func Sync(ctx context.Context, opts SyncOptions) (Report, error) {
	res, err := SyncTargets(ctx, FanOutOptions{
		Source:       opts.Source,
		Mode:         opts.Mode,
		Excludes:     opts.Excludes,
		Checksum:     opts.Checksum,
		MaxDelete:    opts.MaxDelete,
		ModifyWindow: opts.ModifyWindow,
		DryRun:       opts.DryRun,
		Logger:       opts.Logger,
		Targets: []FanOutTarget{{
			Target: opts.Target,
			Open:   opts.Open,
			Exec:   opts.Exec,
			Logger: opts.Logger,
			State:  opts.State,
		}},
	})
	if len(res) == 0 {
		return Report{}, err
	}
	r := res[0]
	if r.Err != nil && r.Err != r.Report.Err {
		// The run stopped before its plan was executed.
		return Report{}, r.Err
	}
	return r.Report, r.Err
}

// checkSourceRoot refuses a source root that is missing, not a directory or
// unreadable, before anything is planned: an empty scan of a missing root
// must never turn into deleting the whole target.
func checkSourceRoot(root string) error {
	fi, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("source %s: no such directory: %w", root, ErrSourceRoot)
	case err != nil:
		return fmt.Errorf("source %s: %w: %w", root, ErrSourceRoot, err)
	case !fi.IsDir():
		return fmt.Errorf("source %s: not a directory: %w", root, ErrSourceRoot)
	}
	f, err := os.Open(root)
	if err == nil {
		_, err = f.Readdirnames(1)
		f.Close()
		if err == io.EOF {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("source %s: cannot read: %w: %w", root, ErrSourceRoot, err)
	}
	return nil
}

// hashCandidates fills Hash on source and target entries that a checksum
// comparison needs: regular files present on both sides with the same size
// (files of different sizes differ anyway). A hash that cannot be computed is
// left empty and logged, and the planner treats the pair as different. Only
// cancellation is returned as an error.
func hashCandidates(ctx context.Context, root string, src, dst []backends.FileInfo, target backends.Backend, log *slog.Logger) error {
	byPath := make(map[string]int, len(dst))
	for i, d := range dst {
		byPath[d.Path] = i
	}
	type pair struct{ s, d int }
	var work []pair
	for i, s := range src {
		j, ok := byPath[s.Path]
		if ok && s.IsRegular() && dst[j].IsRegular() && s.Size == dst[j].Size {
			work = append(work, pair{i, j})
		}
	}
	const workers = 8
	ch := make(chan pair)
	var wg sync.WaitGroup
	for range min(workers, len(work)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range ch {
				s, err := hashLocal(ctx, filepath.Join(root, filepath.FromSlash(src[p.s].Path)))
				if err != nil {
					log.Warn("checksum of source failed", "path", src[p.s].Path, "err", err)
					continue
				}
				if dst[p.d].Hash == "" {
					d, how, err := backends.Hash(ctx, target, dst[p.d].Path)
					if err != nil {
						log.Warn("checksum of target failed", "path", dst[p.d].Path, "err", err)
						continue
					}
					log.Debug("hashed", "path", dst[p.d].Path, "how", how)
					dst[p.d].Hash = d
				}
				src[p.s].Hash = s
			}
		}()
	}
	for _, p := range work {
		if ctx.Err() != nil {
			break
		}
		ch <- p
	}
	close(ch)
	wg.Wait()
	return ctx.Err()
}

// hashLocal returns the hex SHA-256 of a local file.
func hashLocal(ctx context.Context, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return "", fmt.Errorf("read %s: %w", path, err)
		}
	}
}
