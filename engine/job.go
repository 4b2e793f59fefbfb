package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/watch"
)

// Defaults for JobOptions fields left at zero.
const (
	DefaultJobWorkers  = 8
	DefaultRescanEvery = time.Hour
	DefaultProbeMax    = 30 * time.Second
	DefaultDeleteDelay = 500 * time.Millisecond
)

// JobTarget is one target of a Job.
type JobTarget struct {
	// Name identifies the target in logs and Status; "" gives "target N".
	Name string
	// Backend is the target; the Job does not close it.
	Backend backends.Backend
	// LocalPath is the target's directory when it is on the local disk. A
	// target inside the source is excluded from the source, with a warning,
	// so that the job never copies its own output.
	LocalPath string
	// ModifyWindow, when larger, replaces JobOptions.ModifyWindow for this
	// target: 1s for targets that keep whole seconds (SFTP), so that mtimes
	// compare equal after a copy.
	ModifyWindow time.Duration
	// Exec, when set, replaces JobOptions.Exec for this target (its own
	// transfers, retries and bandwidth limit).
	Exec *ExecOptions
	// State, when set, keeps what this target holds between runs (see
	// StateSync): the first full sync plans from it without listing the
	// target when it is trusted, every change the job makes is recorded as
	// it lands, and the target is listed again, repairing drift, once its
	// last full listing is older than State.RescanEvery. Each target needs
	// its own; the Job does not close its store.
	State *StateSync
}

// JobOptions describe a long-running job: one source, several targets.
type JobOptions struct {
	// Source is the local directory to mirror.
	Source  string
	Targets []JobTarget
	Mode    Mode
	// Excludes are gitignore-style patterns (see NewFilter).
	Excludes     []string
	ModifyWindow time.Duration
	// Exec tunes each run of operations against one target (transfers,
	// retries within a run, bandwidth). BWLimit is shared out between the
	// Workers of a target, so a target never exceeds it.
	Exec ExecOptions
	// Workers is how many changes one target handles at once; 0 means
	// DefaultJobWorkers.
	Workers int
	// Debounce and Settle tune the watcher (see watch.Options).
	Debounce, Settle time.Duration
	// RescanEvery is the period of the full safety-net rescan; 0 means
	// DefaultRescanEvery, a negative value none.
	RescanEvery time.Duration
	// DeleteDelay is how long a path must stay gone from the source before
	// it is deleted or moved away on the target: editors that save by
	// renaming the file away and writing it anew leave a gap, and the
	// target must not lose the file in it. 0 means DefaultDeleteDelay.
	DeleteDelay time.Duration
	// BreakAfter is how many changes in a row may fail for an unreachable
	// target before it is marked down; 0 means DefaultBreakAfter.
	BreakAfter int
	// Retry spaces the retries of a failed change, Probe the probes of a
	// target that is down; zero fields take DefaultBackoffBase and
	// DefaultBackoffMax (Probe: DefaultProbeMax).
	Retry, Probe Backoff
	Logger       *slog.Logger

	// Test seams.
	watchOptions watch.Options     // extra watcher settings
	testHints    chan []watch.Hint // batches handled as if the watcher sent them
}

// TargetStatus is a snapshot of one target's queue.
type TargetStatus struct {
	Name     string
	Queued   int // changes waiting
	InFlight int // changes being handled
	Done     int // changes landed
	Failed   int // changes given up for a permanent error (retried on the next change or rescan)
	Retrying int // failed attempts that were queued again

	Uploaded, Deleted, Renamed int
	UploadedBytes              int64

	// Down is set while the target is marked unreachable and probed.
	Down      bool
	DownSince time.Time
	LastError string
	// Synced is set once the first full sync of the target has landed.
	Synced bool
}

// Job mirrors one source to several targets continuously: a full sync of
// every target first, then every change the watcher reports, each target
// with its own queue, workers, retries and circuit breaker.
type Job struct {
	opts    JobOptions
	filter  *Filter
	log     *slog.Logger
	source  string // absolute
	targets []*runner

	mu sync.Mutex
	// The source as last seen, for renames: directory path ("" for the
	// root) -> its entries, and who holds each size and mtime.
	dirs  map[string]*dirEntries
	byKey map[fileKey]keyRef
	moves map[string]recentMove // new path -> where it came from, for a while
	gen   uint64                // bumped by every batch of changes
}

// sharedScan is one scan of the whole source, reused by every target's
// full sync while no change has come in since.
type sharedScan struct {
	src      []backends.FileInfo
	problems []Problem
	gen      uint64
}

// NewJob checks opts and prepares a Job. It fails for a source that is not
// a readable directory (wrapping ErrSourceRoot), no targets, or bad exclude
// patterns. Nothing is read from the targets until Run.
func NewJob(opts JobOptions) (*Job, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(opts.Targets) == 0 {
		return nil, errors.New("job: no targets")
	}
	if err := checkSourceRoot(opts.Source); err != nil {
		return nil, err
	}
	src, err := filepath.Abs(opts.Source)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", opts.Source, err)
	}
	excludes := append([]string(nil), opts.Excludes...)
	for i, t := range opts.Targets {
		if t.Backend == nil {
			return nil, fmt.Errorf("job: target %d has no backend", i)
		}
		if t.LocalPath == "" {
			continue
		}
		rel, ok := inside(src, t.LocalPath)
		if !ok {
			continue
		}
		if rel == "" {
			return nil, fmt.Errorf("target %s is the source directory", t.LocalPath)
		}
		log.Warn("target lies inside the source: excluding it from the source", "target", t.LocalPath, "exclude", "/"+rel+"/")
		excludes = append(excludes, "/"+globEscape(rel)+"/")
	}
	f, err := NewFilter(excludes)
	if err != nil {
		return nil, fmt.Errorf("exclude patterns: %w", err)
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultJobWorkers
	}
	if opts.RescanEvery == 0 {
		opts.RescanEvery = DefaultRescanEvery
	}
	if opts.DeleteDelay <= 0 {
		opts.DeleteDelay = DefaultDeleteDelay
	}
	if opts.BreakAfter <= 0 {
		opts.BreakAfter = DefaultBreakAfter
	}
	if opts.Retry.Base <= 0 {
		opts.Retry.Base = DefaultBackoffBase
	}
	if opts.Retry.Max <= 0 {
		opts.Retry.Max = DefaultBackoffMax
	}
	if opts.Probe.Base <= 0 {
		opts.Probe.Base = DefaultBackoffBase
	}
	if opts.Probe.Max <= 0 {
		opts.Probe.Max = DefaultProbeMax
	}
	j := &Job{opts: opts, filter: f, log: log, source: src, dirs: make(map[string]*dirEntries), byKey: make(map[fileKey]keyRef), moves: make(map[string]recentMove)}
	for i, t := range opts.Targets {
		name := t.Name
		if name == "" {
			name = fmt.Sprintf("target %d", i+1)
		}
		j.targets = append(j.targets, newRunner(j, name, t))
	}
	return j, nil
}

// inside returns target's path relative to the directory src when it lies
// in it (after resolving symlinks as far as the paths exist).
func inside(src, target string) (string, bool) {
	s, t := resolvePath(src), resolvePath(target)
	rel, err := filepath.Rel(s, t)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false
	}
	if rel == "." {
		return "", true
	}
	return filepath.ToSlash(rel), true
}

func resolvePath(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	var rest []string
	for dir := abs; ; dir = filepath.Dir(dir) {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(append([]string{r}, rest...)...)
		}
		if dir == filepath.Dir(dir) {
			return abs
		}
		rest = append([]string{filepath.Base(dir)}, rest...)
	}
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]{}\!`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Run watches the source, syncs every target fully, then keeps them in
// sync until ctx is cancelled, and returns ctx's error then. It returns
// early with an error only when the watcher cannot start or stops by
// itself, or the first scan of the source fails (wrapping ErrSourceRoot for
// an unusable root).
// Failures of targets never end Run: changes stay queued and are retried,
// and a target that is unreachable is marked down and probed until it comes
// back.
//
// On cancel, uploads in flight are cut (their partial files stay for a
// later resume; nothing is half published) and Run returns once every
// goroutine it started has ended. Run may be called once.
func (j *Job) Run(ctx context.Context) error {
	wopts := j.opts.watchOptions
	wopts.Debounce, wopts.Settle = j.opts.Debounce, j.opts.Settle
	wopts.RescanEvery = j.opts.RescanEvery
	wopts.Logger = j.log
	wopts.Ignore = func(rel string, isDir bool) bool { return j.filter.Excluded(rel, isDir) }
	// Watch first and scan second, so that no change falls between them.
	w, err := watch.New(j.source, wopts)
	if err != nil {
		return fmt.Errorf("watch source: %w", err)
	}
	defer w.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	werr := make(chan error, 1)
	wg.Go(func() { werr <- w.Run(ctx) })

	scan, err := j.scanAll(ctx)
	if err != nil {
		cancel()
		return err
	}
	for _, r := range j.targets {
		r.q.push(&item{kind: itemFull, scan: scan})
		wg.Go(func() { r.run(ctx) })
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case batch, ok := <-w.Hints():
			if !ok {
				if err := <-werr; err != nil && ctx.Err() == nil {
					return fmt.Errorf("watch source: %w", err)
				}
				return ctx.Err()
			}
			j.handle(ctx, batch)
		case batch := <-j.opts.testHints:
			j.handle(ctx, batch)
		}
	}
}

// Status returns a snapshot of every target, in the order of
// JobOptions.Targets. Safe for concurrent use.
func (j *Job) Status() []TargetStatus {
	out := make([]TargetStatus, len(j.targets))
	for i, r := range j.targets {
		out[i] = r.status()
	}
	return out
}

// scanAll scans the whole source once for every target and remembers it.
func (j *Job) scanAll(ctx context.Context) (*sharedScan, error) {
	if err := checkSourceRoot(j.source); err != nil {
		return nil, err
	}
	src, problems, err := Scan(ctx, j.source, j.filter, j.log)
	if err != nil {
		return nil, fmt.Errorf("scan source %s: %w", j.source, err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.resetIndexLocked(len(src))
	for _, e := range src {
		j.setIndexLocked(e)
	}
	return &sharedScan{src: src, problems: problems, gen: j.gen}, nil
}

// freshScan returns s when no change came in since it was made.
func (j *Job) freshScan(s *sharedScan) *sharedScan {
	j.mu.Lock()
	defer j.mu.Unlock()
	if s != nil && s.gen == j.gen {
		return s
	}
	return nil
}

// push queues it for every target (each gets its own copy).
func (j *Job) push(it item) {
	for _, r := range j.targets {
		c := it
		r.q.push(&c)
	}
}
