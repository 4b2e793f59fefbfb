package engine

import (
	"context"
	"errors"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// stateFlushEvery bounds how long a landed change of a watch job waits
// before its record is committed: the store commits in batches, and an
// idle job would otherwise hold the last ones until it stops.
const stateFlushEvery = time.Second

// begin marks paths in flight in the target's state before they are
// touched, so that a crash in between is checked on the target at the next
// start. A store that cannot be written is emptied and listed again later.
func (r *runner) begin(paths ...string) {
	if r.state == nil {
		return
	}
	if err := r.state.Store.Begin(paths); err != nil {
		r.stateLost(err)
	}
}

// writer is the backend a change goes through: with a state, one that
// records every operation in the same step that publishes it. A fresh one
// per change, so that the capabilities of a target opened late are seen.
func (r *runner) writer() backends.Backend {
	if r.state == nil {
		return r.target
	}
	return newRecorder(r.target, r.state.Store)
}

// recorded checks that a writer kept every record.
func (r *runner) recorded(w backends.Backend) {
	if f, ok := w.(interface{ failedRecord() bool }); ok && f.failedRecord() {
		r.stateLost(errors.New("a record could not be written"))
	}
}

// stateLost empties a store that fell behind the target: it is not trusted
// again before a full listing.
func (r *runner) stateLost(err error) {
	r.log.Warn("target state missed changes; the target is listed again at the next full sync", "err", err)
	_ = r.state.Store.Reset()
}

// listed notes when the state's last full listing was, after the state
// stood in for a listing; a forced rescan counts once. A store left
// untrusted (an incomplete listing) counts from now: the next full
// comparison lists anyway, and relist brings one about in time.
func (r *runner) listed() {
	r.state.Rescan = false
	at := time.Now()
	if h, err := r.state.Store.Header(); err == nil && !h.ListedAt.IsZero() {
		at = h.ListedAt
	}
	r.mu.Lock()
	r.listedAt = at
	r.mu.Unlock()
}

// fullWithState executes the plan of a full comparison through the state:
// renames found in it become moves, and everything is recorded.
func (r *runner) fullWithState(ctx context.Context, plan Plan, partials []backends.FileInfo) error {
	if len(plan.Ops) == 0 && len(partials) == 0 {
		return nil
	}
	mopts := MoveOptions{ModifyWindow: r.popts.ModifyWindow, IgnoreModes: r.popts.IgnoreModes}
	err := r.execWith(ctx, plan, partials, func(opts ExecOptions) Report {
		return r.state.execute(ctx, plan, r.j.source, r.target, opts, mopts)
	})
	if n := r.state.Stats.Moves; n > 0 {
		r.mu.Lock()
		r.st.Renamed += n
		r.mu.Unlock()
	}
	return err
}

// flushState commits the state's pending records every stateFlushEvery
// and once more when ctx ends.
func (r *runner) flushState(ctx context.Context) {
	tick := time.NewTicker(stateFlushEvery)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			_ = r.state.Store.Flush()
			return
		case <-tick.C:
		}
		err := r.state.Store.Flush()
		if err != nil && !failing {
			r.log.Warn("target state cannot be written", "err", err)
		}
		failing = err != nil
	}
}

// relist queues a full comparison of the target whenever the state's last
// full listing gets older than its RescanEvery, so that a long-running job
// catches changes made on the target behind its back. The comparison
// itself decides to list, from the same age.
func (r *runner) relist(ctx context.Context) {
	every := r.state.RescanEvery
	if every == 0 {
		every = DefaultTargetRescanEvery
	}
	if every < 0 {
		return
	}
	for {
		r.mu.Lock()
		last := r.listedAt
		r.mu.Unlock()
		wait := every
		if !last.IsZero() {
			wait = time.Until(last.Add(every))
		}
		if wait > 0 {
			if sleepCtx(ctx, wait) != nil {
				return
			}
			continue
		}
		r.log.Info("listing the target again to catch drift", "last", last.Format(time.RFC3339))
		r.q.push(&item{kind: itemFull})
		// The comparison may wait behind other changes, or the target may
		// be down: look again later, not at once.
		if sleepCtx(ctx, min(every, time.Minute)) != nil {
			return
		}
	}
}
