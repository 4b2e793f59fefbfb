package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferrysync/ferry/backends"
)

// Defaults for ExecOptions fields left at zero.
const (
	DefaultTransfers            = 4
	DefaultSmallFileConcurrency = 32
	DefaultSmallFileSize        = 1 << 20
	DefaultRetries              = 5
	DefaultBackoffBase          = 500 * time.Millisecond
	DefaultBackoffMax           = 30 * time.Second
	DefaultPartialRetention     = 24 * time.Hour
	DefaultMaxSourceChanges     = 3
	DefaultBreakAfter           = 3
)

// smallFileConcurrencer is a target that names its own default for
// ExecOptions.SmallFileConcurrency: one that carries many small files over
// one link at little cost each (SFTP, whose requests of many files share
// each write) gains from more of them in flight than a local disk does.
type smallFileConcurrencer interface {
	SmallFileConcurrency() int
}

// ExecOptions tunes Execute. The zero value gives the defaults above.
type ExecOptions struct {
	// Transfers bounds the uploads of files larger than SmallFileSize in
	// flight at once; such uploads are limited by bandwidth.
	Transfers int
	// SmallFileConcurrency bounds the uploads of small files, and every
	// other operation (mkdir, delete, mtime fixes), in flight at once; these
	// are limited by round trips, not bandwidth, so more of them pay. 0
	// means the target's own default where it names one, else
	// DefaultSmallFileConcurrency.
	SmallFileConcurrency int
	// SmallFileSize is the largest size counted as a small file.
	SmallFileSize int64
	// Retries is how many times one failed operation is tried again after
	// its first attempt; 0 means DefaultRetries, a negative value none.
	Retries int
	// Backoff spaces the retries; zero fields take the defaults.
	Backoff Backoff
	// Sleep waits between retries; nil sleeps for real. Tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
	// BWLimit caps the bytes per second read from the source for all
	// uploads together; 0 means no limit.
	BWLimit int64
	// Progress receives transfer events; nil means none.
	Progress Progress
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Partials are the partial files ListTarget found. Those that belong
	// to no planned upload are removed, before the first delete, when they
	// are older than PartialRetention or lie in a directory being deleted;
	// a cancelled run removes none.
	Partials []backends.FileInfo
	// PartialRetention keeps young stale partials, which a concurrent or
	// restarted run may still resume; 0 means DefaultPartialRetention, a
	// negative value removes every stale partial.
	PartialRetention time.Duration
	// Now tells the time for the retention; nil means time.Now.
	Now func() time.Time
	// MaxSourceChanges is how often a file may change under an upload, and
	// be re-planned, before it is given up as a Problem; 0 means
	// DefaultMaxSourceChanges.
	MaxSourceChanges int
	// BreakAfter stops the run when this many ops in a row were given up
	// because the target was unreachable (backends.ErrUnreachable): a dead
	// target then fails the run at once, as a whole, instead of file by
	// file. 0 means DefaultBreakAfter, a negative value never.
	BreakAfter int
}

func (o ExecOptions) withDefaults() ExecOptions {
	if o.Transfers <= 0 {
		o.Transfers = DefaultTransfers
	}
	if o.SmallFileConcurrency <= 0 {
		o.SmallFileConcurrency = DefaultSmallFileConcurrency
	}
	if o.SmallFileSize <= 0 {
		o.SmallFileSize = DefaultSmallFileSize
	}
	switch {
	case o.Retries == 0:
		o.Retries = DefaultRetries
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.Backoff.Base <= 0 {
		o.Backoff.Base = DefaultBackoffBase
	}
	if o.Backoff.Max <= 0 {
		o.Backoff.Max = DefaultBackoffMax
	}
	if o.Sleep == nil {
		o.Sleep = sleepCtx
	}
	if o.Progress == nil {
		o.Progress = nopProgress{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.PartialRetention == 0 {
		o.PartialRetention = DefaultPartialRetention
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxSourceChanges <= 0 {
		o.MaxSourceChanges = DefaultMaxSourceChanges
	}
	if o.BreakAfter == 0 {
		o.BreakAfter = DefaultBreakAfter
	}
	return o
}

// Report says what a run did.
type Report struct {
	// Plan is what was planned; with a dry run, it is all the report holds
	// besides the scan counts.
	Plan Plan
	// SourceFiles, SourceBytes count the regular files of the scanned
	// source (filled by Sync).
	SourceFiles int
	SourceBytes int64

	Uploaded      int   // files published
	UploadedBytes int64 // their sizes
	SentBytes     int64 // bytes written to the target
	ResumedBytes  int64 // bytes kept from earlier partial uploads
	Mkdirs        int
	Symlinks      int
	Touched       int // mtime/mode fixes without copying
	Deleted       int
	// PartialsRemoved counts stale partial files cleaned up.
	PartialsRemoved int

	// Problems are failures with single paths (after retries), scan and
	// listing errors; the rest of the run went on. They make the run fail.
	Problems []Problem
	// Skipped are paths left alone on purpose (from the plan, or symlinks
	// on a target that cannot hold them): warnings, not failures.
	Skipped []Problem
	// Vanished are source files deleted before they could be copied. They
	// are warnings: the target ends as the source now is, and the next run
	// deletes any older copy.
	Vanished []string
	// DeletesRefused is set when the plan dropped its deletes for safety.
	DeletesRefused error
	// Err is set when the run stopped early: the context's error when it
	// was cancelled, or an error wrapping backends.ErrUnreachable when the
	// target stopped answering (see ExecOptions.BreakAfter).
	Err error

	Duration time.Duration
}

// Failed reports whether the run should end with a failure status: some
// path failed, deletes were refused, or the run was cancelled.
func (r *Report) Failed() bool {
	return len(r.Problems) > 0 || r.DeletesRefused != nil || r.Err != nil
}

// Execute runs plan against target, copying files from the local directory
// srcRoot. Ops run in the plan's order, one phase per run of ops of the same
// kind with a barrier between phases (uploads and symlinks form one phase;
// deletes are split further by depth, so a directory is removed only after
// its contents). Within a phase ops run concurrently.
//
// Each op is retried with backoff on retryable errors; a permanent error, or
// the last retry, makes it a Problem and the rest go on. An upload whose
// source changed under it is re-planned from a fresh stat and tried again.
// Stale partial files (opts.Partials) are removed before the deletes.
//
// Cancelling ctx stops the workers promptly: ops in flight return, nothing
// new starts, partial files stay for a later run to resume, and the report's
// Err is set. A target that stays unreachable stops the run the same way
// (ExecOptions.BreakAfter), with Err wrapping backends.ErrUnreachable. Execute never returns a nil-valued report; failures are in it.
func Execute(ctx context.Context, plan Plan, srcRoot string, target backends.Backend, opts ExecOptions) Report {
	if opts.SmallFileConcurrency <= 0 {
		if h, ok := backends.As[smallFileConcurrencer](target); ok {
			opts.SmallFileConcurrency = h.SmallFileConcurrency()
		}
	}
	opts = opts.withDefaults()
	start := time.Now()
	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	e := &executor{
		abort:   abort,
		opts:    opts,
		srcRoot: srcRoot,
		target:  target,
		limiter: newLimiter(opts.BWLimit),
		log:     opts.Logger,
		prog:    opts.Progress,
	}
	e.rep.Plan = plan
	e.rep.Skipped = append(e.rep.Skipped, plan.Skipped...)
	e.rep.DeletesRefused = plan.DeletesRefused

	var files int
	var bytes int64
	for _, op := range plan.Ops {
		if op.Kind == OpUpload {
			files++
			bytes += op.Src.Size
		}
	}
	e.prog.Totals(files, bytes)
	rootAtStart, _ := os.Stat(srcRoot)

	for _, phase := range phases(plan.Ops) {
		if ctx.Err() != nil {
			break
		}
		if phase[0].Kind == OpDelete {
			e.cleanPartials(ctx, plan.Ops)
		}
		t0 := time.Now()
		e.runPhase(ctx, phase)
		e.log.Debug("phase done", "ops", len(phase), "first", phase[0].Kind.String(), "took", time.Since(t0))
	}
	e.cleanPartials(ctx, plan.Ops)
	if len(e.rep.Vanished) > 0 {
		e.checkRootKept(rootAtStart)
	}
	if ctx.Err() != nil {
		e.rep.Err = context.Cause(ctx)
	}
	e.rep.Duration = time.Since(start)
	return e.rep
}

type executor struct {
	opts    ExecOptions
	srcRoot string
	target  backends.Backend
	limiter *rate.Limiter
	log     *slog.Logger
	prog    Progress

	abort context.CancelCauseFunc

	mu                sync.Mutex
	rep               Report
	unreachableStreak int // ops given up in a row for ErrUnreachable

	partialsCleaned bool // only touched between phases
}

// ofSourceVersion reports whether the partial at p is of the version of its
// file that the source holds now (the same key as that file's PartialName).
func (e *executor) ofSourceVersion(p string) bool {
	final, ok := backends.PartialFinal(p)
	if !ok {
		return false
	}
	fi, err := os.Lstat(filepath.Join(e.srcRoot, filepath.FromSlash(final)))
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	want, _ := backends.PartialKey(p)
	key, ok := backends.PartialKey(backends.PartialName(final, fi.Size(), fi.ModTime()))
	return ok && key == want
}

// phases cuts ops into runs that may run concurrently: maximal runs of the
// same kind (uploads and symlinks together), deletes also cut where the
// depth changes.
func phases(ops []Op) [][]Op {
	var out [][]Op
	class := func(op Op) int {
		k := op.Kind
		if k == OpSymlink {
			k = OpUpload
		}
		c := int(k) * 10000
		if k == OpDelete {
			c += strings.Count(op.Path, "/")
		}
		return c
	}
	for i := 0; i < len(ops); {
		j := i + 1
		for j < len(ops) && class(ops[j]) == class(ops[i]) {
			j++
		}
		out = append(out, ops[i:j])
		i = j
	}
	return out
}

// runPhase runs ops concurrently: large uploads on Transfers workers, all
// the rest on SmallFileConcurrency workers, and returns when all are done or
// ctx is cancelled.
func (e *executor) runPhase(ctx context.Context, ops []Op) {
	var large, small []Op
	for _, op := range ops {
		if op.Kind == OpUpload && op.Src.Size > e.opts.SmallFileSize {
			large = append(large, op)
		} else {
			small = append(small, op)
		}
	}
	var wg sync.WaitGroup
	for _, q := range []*opQueue{
		newOpQueue(large, e.opts.Transfers, false),
		newOpQueue(small, e.opts.SmallFileConcurrency, true),
	} {
		for range q.workers {
			wg.Go(func() {
				for batch := q.claim(); len(batch) > 0 && ctx.Err() == nil; batch = q.claim() {
					for _, op := range batch {
						if ctx.Err() != nil {
							return
						}
						e.runOp(ctx, op)
					}
				}
			})
		}
	}
	wg.Wait()
}

// maxBatch bounds the ops a worker claims at once.
const maxBatch = 128

// opQueue hands a phase's ops to its workers. With batching, a worker
// claims a run of consecutive ops in one directory, up to a share of what
// is left that shrinks as the phase drains (so the last ops still spread
// over all workers). Workers then mostly stay out of each other's
// directories: creating and renaming entries takes the directory's lock in
// the kernel, and a tree of small files copied to a local disk spent most
// of its CPU contending for it when all workers wrote into the same
// directory at once. A claim is a short critical section, not a channel
// hand-off per op, so workers do not wake each other per file either.
type opQueue struct {
	workers int
	batch   bool

	mu   sync.Mutex
	ops  []Op
	next int
}

func newOpQueue(ops []Op, workers int, batch bool) *opQueue {
	return &opQueue{ops: ops, workers: min(len(ops), workers), batch: batch}
}

// claim returns the next ops to run, or nil when none are left. Safe for
// concurrent use.
func (q *opQueue) claim() []Op {
	q.mu.Lock()
	defer q.mu.Unlock()
	lo := q.next
	rest := len(q.ops) - lo
	if rest == 0 {
		return nil
	}
	n := 1
	if q.batch {
		n = max(1, min(maxBatch, rest/(2*q.workers)))
	}
	dir := parentOf(q.ops[lo].Path)
	hi := lo + 1
	for hi < len(q.ops) && hi-lo < n && parentOf(q.ops[hi].Path) == dir {
		hi++
	}
	q.next = hi
	return q.ops[lo:hi:hi]
}

func (e *executor) runOp(ctx context.Context, op Op) {
	switch op.Kind {
	case OpUpload:
		e.upload(ctx, op)
	case OpSymlink:
		e.symlink(ctx, op)
	case OpMkdir:
		e.mkdir(ctx, op)
	case OpSetModTime:
		e.touch(ctx, op)
	case OpDelete:
		e.delete(ctx, op)
	default:
		e.problem(op.Path, fmt.Errorf("unknown operation %v", op.Kind))
	}
}

// retry runs fn until it succeeds, fails permanently, runs out of retries or
// ctx is cancelled, and returns its last error.
func (e *executor) retry(ctx context.Context, what, path string, fn func() error) error {
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if backends.IsPermanent(err) || attempt >= e.opts.Retries {
			return err
		}
		d := e.opts.Backoff.DelayFor(attempt, err)
		e.log.Debug("retrying", "op", what, "path", path, "attempt", attempt+1, "wait", d, "err", err)
		if err := e.opts.Sleep(ctx, d); err != nil {
			return err
		}
	}
}

// problem records a path given up on, and stops the run when the target
// has been unreachable for BreakAfter of them in a row.
func (e *executor) problem(path string, err error) {
	e.log.Warn("failed", "path", path, "err", err)
	e.mu.Lock()
	e.rep.Problems = append(e.rep.Problems, Problem{Path: path, Err: err})
	broken := false
	if errors.Is(err, backends.ErrUnreachable) {
		e.unreachableStreak++
		broken = e.opts.BreakAfter > 0 && e.unreachableStreak >= e.opts.BreakAfter
	} else {
		e.unreachableStreak = 0
	}
	e.mu.Unlock()
	if broken {
		e.abort(fmt.Errorf("stopped after %d operations in a row failed, last %s: %w", e.opts.BreakAfter, path, err))
	}
}

func (e *executor) skipped(path string, err error) {
	e.log.Warn("skipped", "path", path, "reason", err)
	e.mu.Lock()
	e.rep.Skipped = append(e.rep.Skipped, Problem{Path: path, Err: err})
	e.mu.Unlock()
}

// checkRootKept turns vanished files into a failure of the run when the
// source root itself went away or was swapped (a disk unmounted under it)
// while the run copied: those files did not vanish one by one, the whole
// source did, and a scheduled job must not report that as success.
func (e *executor) checkRootKept(atStart fs.FileInfo) {
	err := checkSourceRoot(e.srcRoot)
	if err == nil && atStart != nil {
		if now, serr := os.Stat(e.srcRoot); serr != nil || !os.SameFile(atStart, now) {
			err = fmt.Errorf("source %s was replaced during the run (unmounted?): %w", e.srcRoot, ErrSourceRoot)
		}
	}
	if err != nil {
		e.problem(".", fmt.Errorf("%d files vanished: %w", len(e.rep.Vanished), err))
	}
}

// count records a success; it also ends a streak of unreachable failures.
func (e *executor) count(f func(r *Report)) {
	e.mu.Lock()
	f(&e.rep)
	e.unreachableStreak = 0
	e.mu.Unlock()
}

// cleanPartials removes partial files that no planned upload will resume
// (see StalePartials): those older than the retention and, whatever their
// age, those that are not regular files (nothing can resume them), those
// inside a directory the plan deletes, which could not be removed otherwise,
// and those of the source's version of a file that needs no upload (it is
// on the target already: an upload published it, and could not remove the
// partials it resumed from).
// It runs before the first delete and at most once. Failures are
// logged, not reported, since a leftover partial harms nothing.
func (e *executor) cleanPartials(ctx context.Context, ops []Op) {
	if e.partialsCleaned || ctx.Err() != nil {
		return
	}
	e.partialsCleaned = true
	var deleted []string
	for _, op := range ops {
		if op.Kind == OpDelete {
			deleted = append(deleted, op.Path+"/")
		}
	}
	underDeleted := func(p string) bool {
		for _, d := range deleted {
			if strings.HasPrefix(p, d) {
				return true
			}
		}
		return false
	}
	if c, ok := backends.As[backends.Cleaner](e.target); ok {
		if n, err := c.CleanupStale(ctx); err != nil {
			e.log.Warn("could not clean up stale uploads", "removed", n, "err", err)
		} else if n > 0 {
			e.count(func(r *Report) { r.PartialsRemoved += n })
			e.log.Debug("cleaned up stale uploads", "removed", n)
		}
	}
	now := e.opts.Now()
	for _, p := range StalePartials(e.opts.Partials, e.rep.Plan) {
		// Only a regular file can be resumed; anything else under a partial
		// name (the temporary link of a symlink being replaced, left by a
		// killed run) goes at once.
		young := e.opts.PartialRetention > 0 && now.Sub(p.ModTime) < e.opts.PartialRetention
		if young && p.IsRegular() && !underDeleted(p.Path) && !e.ofSourceVersion(p.Path) {
			continue
		}
		err := e.target.Remove(ctx, p.Path)
		switch {
		case err == nil:
			e.count(func(r *Report) { r.PartialsRemoved++ })
			e.log.Debug("removed stale partial", "path", p.Path)
		case errors.Is(err, backends.ErrNotExist):
		default:
			e.log.Warn("could not remove stale partial", "path", p.Path, "err", err)
		}
	}
}
