package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// runner drives one target of a Job: its queue, its workers, its breaker and
// the prober that finds it back when it is down.
type runner struct {
	j        *Job
	name     string
	target   backends.Backend
	log      *slog.Logger
	q        *queue
	br       *breaker
	popts    PlanOptions
	execOpts ExecOptions // for each run of operations against this target
	state    *StateSync  // nil: no state kept

	mu       sync.Mutex
	st       TargetStatus
	known    map[string]bool // directories known to exist on the target
	synced   bool
	listedAt time.Time // the state's last full listing (state only)
}

func newRunner(j *Job, name string, t JobTarget) *runner {
	b := t.Backend
	_, symlinks := backends.As[backends.Symlinker](b)
	_, chmod := backends.As[backends.Chmoder](b)
	exec := j.opts.Exec
	if t.Exec != nil {
		exec = *t.Exec
	}
	if exec.BWLimit > 0 {
		// Each worker runs its own Execute with its own token bucket, so the
		// target's limit is shared out between them.
		exec.BWLimit = max(1, exec.BWLimit/int64(j.opts.Workers))
	}
	return &runner{
		execOpts: exec,
		j:        j,
		name:     name,
		target:   b,
		state:    t.State,
		log:      j.log.With("target", name),
		q:        newQueue(),
		br:       newBreaker(j.opts.BreakAfter),
		known:    make(map[string]bool),
		popts: PlanOptions{
			Mode:         j.opts.Mode,
			MaxDelete:    -1,
			ModifyWindow: max(j.opts.ModifyWindow, t.ModifyWindow),
			Symlinks:     symlinks,
			Filter:       j.filter,
			IgnoreModes:  !chmod,
		},
	}
}

func (r *runner) status() TargetStatus {
	r.mu.Lock()
	s := r.st
	s.Name = r.name
	s.Synced = r.synced
	r.mu.Unlock()
	s.Queued, s.InFlight = r.q.counts()
	s.DownSince = r.br.downSince()
	s.Down = !s.DownSince.IsZero()
	return s
}

// run starts the workers and the prober and returns when ctx is done and
// all of them have ended.
func (r *runner) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range r.j.opts.Workers {
		wg.Go(func() { r.work(ctx) })
	}
	wg.Go(func() { r.probe(ctx) })
	if r.state != nil {
		wg.Go(func() { r.flushState(ctx) })
		wg.Go(func() { r.relist(ctx) })
	}
	wg.Wait()
}

func (r *runner) work(ctx context.Context) {
	for {
		if open, changed := r.br.state(); open {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			continue
		}
		it := r.q.next(ctx)
		if it == nil {
			return
		}
		err := r.process(ctx, it)
		r.q.done(it)
		if ctx.Err() != nil {
			return
		}
		r.settle(it, err)
	}
}

// settle books the outcome of one item: success, a retry with backoff, or
// a permanent failure that waits for the next change or rescan.
func (r *runner) settle(it *item, err error) {
	if errors.Is(err, errGoneWait) {
		it.goneSeen = true
		r.q.later(it, r.j.opts.DeleteDelay)
		return
	}
	if err == nil {
		if r.br.success() {
			r.log.Info("target is back")
		}
		r.mu.Lock()
		r.st.Done++
		if it.kind == itemFull && it.path == "" {
			r.synced = true
		}
		r.mu.Unlock()
		r.log.Debug("change landed", "kind", it.kind, "path", it.path)
		return
	}
	r.mu.Lock()
	r.st.LastError = fmt.Sprintf("%s %s: %v", it.kind, displayPath(it.path), err)
	// A stale record of the target's directories can make an upload fail
	// for a missing parent; forget them so the next attempt makes them.
	clear(r.known)
	r.mu.Unlock()
	switch {
	case errors.Is(err, backends.ErrUnreachable):
		if r.br.failure() {
			r.log.Warn("target unreachable: marked down, changes stay queued", "err", err)
		}
	case backends.IsPermanent(err) && !(errors.Is(err, backends.ErrNotExist) && it.attempts == 0):
		r.mu.Lock()
		r.st.Failed++
		r.mu.Unlock()
		r.log.Warn("change failed; it is tried again on the next change or rescan", "path", displayPath(it.path), "err", err)
		return
	}
	r.mu.Lock()
	r.st.Retrying++
	r.mu.Unlock()
	d := r.j.opts.Retry.Delay(it.attempts)
	r.log.Debug("change failed, retrying", "path", displayPath(it.path), "in", d, "err", err)
	r.q.retry(it, d)
}

func displayPath(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

// probe waits for the breaker to open, then checks the target with backoff
// until it answers, which closes the breaker and lets the queue drain.
func (r *runner) probe(ctx context.Context) {
	for attempt := 0; ; {
		open, changed := r.br.state()
		if !open {
			attempt = 0
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			continue
		}
		if sleepCtx(ctx, r.j.opts.Probe.Delay(attempt)) != nil {
			return
		}
		attempt++
		_, err := r.target.Stat(ctx, "")
		if ctx.Err() != nil {
			return
		}
		if err == nil || !errors.Is(err, backends.ErrUnreachable) {
			if r.br.success() {
				r.log.Info("target answers again: catching up", "queued", r.status().Queued)
			}
			continue
		}
		r.log.Debug("target still unreachable", "err", err)
	}
}

// process brings the target in line for one item and returns why it could
// not, classified as the backends classify errors.
func (r *runner) process(ctx context.Context, it *item) error {
	waitGone := r.j.opts.Mode == Mirror && !it.goneSeen && it.kind != itemFull
	if waitGone {
		// Something is about to go from the target: make sure it stays
		// gone from the source for a moment first.
		p := it.path
		if it.kind == itemRename {
			p = it.from
		}
		if r.j.sourceMissing(p) {
			return errGoneWait
		}
	}
	switch it.kind {
	case itemRename:
		return r.rename(ctx, it)
	case itemFull:
		if it.path == "" {
			return r.full(ctx, it)
		}
	}
	return r.syncPath(ctx, it.path, waitGone)
}

// errGoneWait asks for an item to be looked at again after DeleteDelay.
var errGoneWait = errors.New("path gone from the source: waiting before deleting it")

// exec runs the plan of one change and turns its report into one error.
// With a state, the paths it touches are marked in flight first and every
// operation is recorded as it lands.
func (r *runner) exec(ctx context.Context, plan Plan, partials []backends.FileInfo) error {
	if len(plan.Ops) == 0 && len(partials) == 0 {
		return nil
	}
	paths := make([]string, len(plan.Ops))
	for i, op := range plan.Ops {
		paths[i] = op.Path
	}
	r.begin(paths...)
	w := r.writer()
	defer r.recorded(w)
	return r.execWith(ctx, plan, partials, func(opts ExecOptions) Report {
		return Execute(ctx, plan, r.j.source, w, opts)
	})
}

// execWith runs a plan through run and turns its report into one error.
func (r *runner) execWith(ctx context.Context, plan Plan, partials []backends.FileInfo, run func(ExecOptions) Report) error {
	opts := r.execOpts
	opts.Partials = partials
	opts.Logger = r.log
	rep := run(opts)
	r.mu.Lock()
	r.st.Uploaded += rep.Uploaded
	r.st.UploadedBytes += rep.UploadedBytes
	r.st.Deleted += rep.Deleted
	r.mu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if rep.Err != nil {
		return rep.Err
	}
	if plan.DeletesRefused != nil {
		r.log.Warn("deletes refused", "reason", plan.DeletesRefused)
	}
	var unreachable, retryable, permanent error
	for _, p := range rep.Problems {
		switch {
		case errors.Is(p.Err, backends.ErrUnreachable):
			unreachable = p
		case backends.IsPermanent(p.Err):
			permanent = p
		default:
			retryable = p
		}
	}
	n := len(rep.Problems)
	switch {
	case unreachable != nil:
		return fmt.Errorf("%d failed, e.g. %w", n, unreachable)
	case retryable != nil:
		return fmt.Errorf("%d failed, e.g. %w", n, retryable)
	case permanent != nil:
		return backends.Permanent(fmt.Errorf("%d failed, e.g. %w", n, permanent))
	}
	return nil
}

// full compares the whole source with the whole target.
func (r *runner) full(ctx context.Context, it *item) error {
	scan := r.j.freshScan(it.scan)
	it.scan = nil // a retry scans again
	var src []backends.FileInfo
	var scanProblems []Problem
	if scan != nil {
		src, scanProblems = scan.src, scan.problems
	} else {
		if err := checkSourceRoot(r.j.source); err != nil {
			return backends.Permanent(err)
		}
		var err error
		src, scanProblems, err = Scan(ctx, r.j.source, r.j.filter, r.log)
		if err != nil {
			return backends.Permanent(fmt.Errorf("scan source: %w", err))
		}
	}
	list := ListTarget
	if r.state != nil {
		list = r.state.list
	}
	dst, partials, listProblems, err := list(ctx, r.target, r.j.filter, r.log)
	if r.state != nil && (err == nil || errors.Is(err, backends.ErrNotExist)) {
		r.listed()
	}
	switch {
	case errors.Is(err, backends.ErrNotExist):
		dst, partials = nil, nil
		if err := r.target.Mkdir(ctx, ""); err != nil {
			return fmt.Errorf("create target root: %w", err)
		}
	case err != nil:
		return fmt.Errorf("list target: %w", err)
	}
	popts := r.popts
	popts.Incomplete = Incomplete(scanProblems) || len(listProblems) > 0
	plan := MakePlan(src, dst, popts)
	if r.state != nil {
		err = r.fullWithState(ctx, plan, partials)
	} else {
		err = r.exec(ctx, plan, partials)
	}
	if err == nil {
		r.mu.Lock()
		for _, e := range src {
			if e.IsDir() {
				r.known[e.Path] = true
			}
		}
		r.mu.Unlock()
	}
	// A full comparison holds the whole source, the whole target and the
	// plan at once, then drops them; a daemon that idles for hours after
	// should not keep that peak, so hand it back to the system now.
	debug.FreeOSMemory()
	return err
}

// ensureDir makes sure the directory dir exists on the target.
func (r *runner) ensureDir(ctx context.Context, dir string) error {
	if dir == "" {
		return nil
	}
	r.mu.Lock()
	ok := r.known[dir]
	r.mu.Unlock()
	if ok {
		return nil
	}
	r.begin(dir)
	w := r.writer()
	err := w.Mkdir(ctx, dir)
	r.recorded(w)
	if err != nil {
		return fmt.Errorf("mkdir %s: %w", dir, err)
	}
	r.mu.Lock()
	r.known[dir] = true
	r.mu.Unlock()
	return nil
}

// forget drops what is known about directories at and under dir.
func (r *runner) forget(dir string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range r.known {
		if covers(dir, p) {
			delete(r.known, p)
		}
	}
}
