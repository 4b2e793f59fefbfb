package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/engine/state"
)

// DefaultTargetRescanEvery is how old the last full listing of a target
// may be before a run lists it again to catch drift.
const DefaultTargetRescanEvery = 24 * time.Hour

// maxVerify is how many in-flight paths a start-up checks one by one; past
// it a full listing is cheaper.
const maxVerify = 10000

// StateSync keeps what one target holds between runs, in a state store,
// so that a run plans from the store instead of listing the whole target,
// and turns renames in the source into moves on the target.
//
// The store is trusted when it was built from a full listing and every
// path touched by a run that did not end cleanly (its in-flight set) has
// been checked again on the target; it is listed again, and the
// difference reported as drift, on Rescan, when the last listing is older
// than RescanEvery, and whenever it cannot be trusted. A StateSync serves
// one run at a time.
type StateSync struct {
	Store *state.Store
	// Rescan forces a full listing of the target.
	Rescan bool
	// RescanEvery bounds the age of the last full listing; 0 means
	// DefaultTargetRescanEvery, a negative value never.
	RescanEvery time.Duration
	// Now tells the time; nil means time.Now.
	Now func() time.Time
	// Stats says what the last run did with the state.
	Stats StateStats
}

// StateStats says how a run used the state.
type StateStats struct {
	// Listed is set when the target was listed in full, Why says why.
	Listed bool
	Why    string
	// Drifted counts paths where a full listing disagreed with the store.
	Drifted int
	// Verified counts in-flight paths checked after a run that was cut.
	Verified int
	// Moves counts server-side moves done, MovedFiles and MovedBytes what
	// they carried.
	Moves      int
	MovedFiles int
	MovedBytes int64
	// Recorded is false when the store could not follow every change; it
	// is then listed again next time.
	Recorded bool
}

func (ts *StateSync) now() time.Time {
	if ts.Now != nil {
		return ts.Now()
	}
	return time.Now()
}

// list stands in for ListTarget: the store's records when it can be
// trusted, else a full listing that rebuilds it. Errors are those of
// ListTarget, or of the state file.
func (ts *StateSync) list(ctx context.Context, b backends.Backend, f *Filter, log *slog.Logger) (entries, partials []backends.FileInfo, problems []Problem, err error) {
	h, partials, why, err := ts.trust(ctx, b, log)
	if err != nil {
		return nil, nil, nil, err
	}
	if why == "" {
		entries, err = ts.Store.Entries()
		if errors.Is(err, state.ErrCorrupt) {
			if why, err = ts.corrupt(err, &h); err != nil {
				return nil, nil, nil, err
			}
		} else if err != nil {
			return nil, nil, nil, err
		}
	}
	if why == "" {
		if err := ts.Store.Unmap(); err != nil {
			return nil, nil, nil, err
		}
		log.Debug("target state trusted: planning without a listing", "entries", len(entries), "listed", h.ListedAt.Format(time.RFC3339))
		return entries, partials, nil, nil
	}
	entries, partials, problems, err = ts.relist(ctx, b, f, log, h, why)
	return entries, partials, problems, err
}

// trust decides whether the store can stand in for a listing: why is
// empty when it can, and partials are those found beside the paths a cut
// run left in flight, which are checked again first. Errors are those of
// the state file, or of the target while checking.
func (ts *StateSync) trust(ctx context.Context, b backends.Backend, log *slog.Logger) (h state.Header, partials []backends.FileInfo, why string, err error) {
	ts.Stats = StateStats{}
	h, err = ts.Store.Header()
	if err != nil {
		return h, nil, "", err
	}
	every := ts.RescanEvery
	if every == 0 {
		every = DefaultTargetRescanEvery
	}
	switch {
	case ts.Store.Rebuilt() != "" && h.ListedAt.IsZero():
		why = "state file rebuilt: " + ts.Store.Rebuilt()
	case h.ListedAt.IsZero():
		why = "no listing recorded yet"
	case ts.Rescan:
		why = "rescan asked for"
	case every > 0 && ts.now().Sub(h.ListedAt) >= every:
		why = fmt.Sprintf("last full listing %s ago", ts.now().Sub(h.ListedAt).Round(time.Second))
	}
	if why == "" {
		partials, why, err = ts.verify(ctx, b, log)
	}
	return h, partials, why, err
}

// corrupt empties a store whose records turned out undecodable, so that
// it is rebuilt from a listing, and says why.
func (ts *StateSync) corrupt(cause error, h *state.Header) (string, error) {
	if err := ts.Store.Reset(); err != nil {
		return "", err
	}
	h.ListedAt = time.Time{}
	return cause.Error(), nil
}

// relist lists the whole target for the reason why, counts the drift from
// the store (unless it was never listed) and rebuilds the store from the
// listing. Errors are those of ListTarget, or of the state file.
func (ts *StateSync) relist(ctx context.Context, b backends.Backend, f *Filter, log *slog.Logger, h state.Header, why string) (entries, partials []backends.FileInfo, problems []Problem, err error) {
	rb, err := ts.startRelist(log, h, why)
	if err != nil {
		return nil, nil, nil, err
	}
	entries, partials, problems, err = ListTarget(ctx, b, f, log)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, e := range entries {
		if err := rb.Add(e); err != nil {
			return nil, nil, nil, err
		}
	}
	if err := rb.finish(len(problems) > 0); err != nil {
		return nil, nil, nil, err
	}
	return entries, partials, problems, nil
}

// relister rebuilds the store from a listing handed to it in path order,
// counting the drift from the old records as it goes.
type relister struct {
	*state.Rebuild
	ts    *StateSync
	log   *slog.Logger
	at    time.Time
	count bool // the store was listed before: differences are drift
	bad   bool // a record could not be decoded: drift no longer counted
}

// startRelist starts listing the target for the reason why: the store is
// marked never listed until the rebuild finishes. Errors are the state
// file's.
func (ts *StateSync) startRelist(log *slog.Logger, h state.Header, why string) (*relister, error) {
	ts.Stats.Listed, ts.Stats.Why = true, why
	log.Debug("listing the target", "why", why)
	r := &relister{ts: ts, log: log, at: ts.now(), count: !h.ListedAt.IsZero()}
	rb, err := ts.Store.Rebuild()
	if err != nil {
		return nil, err
	}
	rb.Diff = r.diff
	r.Rebuild = rb
	return r, nil
}

// finish commits the rebuilt store, trusted only when the listing was
// complete, and reports the drift.
func (r *relister) finish(incomplete bool) error {
	at := r.at
	if incomplete {
		at = time.Time{} // an incomplete listing is never trusted later
	}
	if err := r.Finish(at); err != nil {
		return err
	}
	if r.ts.Stats.Drifted > 0 {
		r.log.Warn(fmt.Sprintf("%d drifted paths: the target changed behind ferry's back; the plan repairs them", r.ts.Stats.Drifted))
	}
	return nil
}

// diff counts a path where the listing and the store disagree: missing or
// extra entries, another type, size, link target, or a file mtime off by
// more than a second (targets that keep whole seconds are not drift).
func (r *relister) diff(cur, old *backends.FileInfo, oldErr error) {
	if !r.count || r.bad {
		return
	}
	if oldErr != nil {
		r.bad = true
		r.log.Warn("state unreadable; rebuilding it from the listing", "err", oldErr)
		return
	}
	report := func(p, what string) {
		r.ts.Stats.Drifted++
		if r.ts.Stats.Drifted <= 20 {
			r.log.Info("drifted", "path", p, "what", what)
		}
	}
	switch {
	case old == nil:
		report(cur.Path, "added on the target")
	case cur == nil:
		report(old.Path, "gone from the target")
	case kindOf(cur) != kindOf(old):
		report(old.Path, "type changed")
	case cur.IsRegular() && cur.Size != old.Size:
		report(old.Path, "size changed")
	case cur.IsRegular() && !(PlanOptions{ModifyWindow: time.Second}).sameTime(cur.ModTime, old.ModTime):
		report(old.Path, "mtime changed")
	case cur.IsSymlink() && cur.LinkTarget != old.LinkTarget:
		report(old.Path, "link target changed")
	}
}

// verify checks again, on the target, the paths a cut run left in flight,
// and fixes their records (and those under them). It lists each distinct
// parent once, which also finds partial files left beside them. A non-empty
// why asks for a full listing instead.
func (ts *StateSync) verify(ctx context.Context, b backends.Backend, log *slog.Logger) (partials []backends.FileInfo, why string, err error) {
	paths, err := ts.Store.InFlight()
	if err != nil {
		return nil, "", err
	}
	if len(paths) == 0 {
		return nil, "", nil
	}
	if len(paths) > maxVerify {
		return nil, fmt.Sprintf("%d paths in flight when the last run stopped", len(paths)), nil
	}
	log.Info("last run did not end cleanly: checking the paths it touched", "paths", len(paths))
	byParent := map[string][]string{}
	for _, p := range paths {
		parent, _ := backends.Split(p)
		byParent[parent] = append(byParent[parent], p)
	}
	for parent, ps := range byParent {
		list, err := b.List(ctx, parent)
		switch {
		case errors.Is(err, backends.ErrNotExist):
			list = nil
		case err != nil:
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			return nil, fmt.Sprintf("checking %s: %v", parent, err), nil
		}
		found := map[string]backends.FileInfo{}
		for _, e := range list {
			if _, name := backends.Split(e.Path); backends.IsPartialName(name) {
				partials = append(partials, e)
			}
			found[e.Path] = e
		}
		for _, p := range ps {
			ts.Stats.Verified++
			e, ok := found[p]
			if !ok {
				err = ts.Store.Delete(p)
			} else if err = ts.Store.Delete(p); err == nil {
				// Whatever was recorded under it may be stale too.
				err = ts.putTree(ctx, b, e, &partials)
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil, "", ctx.Err()
				}
				return nil, fmt.Sprintf("checking %s: %v", p, err), nil
			}
		}
	}
	SortEntries(partials)
	return partials, "", ts.Store.Flush()
}

// putTree records e and, for a directory, everything under it as listed now.
func (ts *StateSync) putTree(ctx context.Context, b backends.Backend, e backends.FileInfo, partials *[]backends.FileInfo) error {
	if err := ts.Store.Put(e); err != nil {
		return err
	}
	if !e.IsDir() {
		return nil
	}
	list, err := b.List(ctx, e.Path)
	if err != nil {
		return err
	}
	for _, c := range list {
		if _, name := backends.Split(c.Path); backends.IsPartialName(name) {
			*partials = append(*partials, c)
			continue
		}
		if err := ts.putTree(ctx, b, c, partials); err != nil {
			return err
		}
	}
	return nil
}

// execute runs plan with the state kept: the paths it may touch are marked
// in flight first, moves found in the plan are done as renames, the rest
// runs through Execute on a target that records each success.
func (ts *StateSync) execute(ctx context.Context, plan Plan, srcRoot string, target backends.Backend, exec ExecOptions, mopts MoveOptions) Report {
	log := exec.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(plan.Ops) == 0 {
		// Nothing to touch: a store already clean stays as it is, with no
		// write (and no fsync) at all.
		if h, err := ts.Store.Header(); err == nil && h.Clean {
			ts.Stats.Recorded = true
			return Execute(ctx, plan, srcRoot, target, exec)
		}
	}
	moves := FindMoves(plan, mopts)
	paths := make([]string, 0, len(plan.Ops))
	for _, op := range plan.Ops {
		paths = append(paths, op.Path)
	}
	if err := ts.Store.Begin(paths); err != nil {
		log.Warn("state not kept for this run", "err", err)
		_ = ts.Store.Reset()
		return Execute(ctx, plan, srcRoot, target, exec)
	}
	rec := newRecorder(target, ts.Store)
	var done []Move
	for _, mv := range moves {
		if ctx.Err() != nil {
			break
		}
		if err := ts.move(ctx, rec, mv); err != nil {
			log.Debug("move not done; copying instead", "from", mv.From, "to", mv.To, "err", err)
			continue
		}
		done = append(done, mv)
		ts.Stats.Moves++
		ts.Stats.MovedFiles += mv.Files
		ts.Stats.MovedBytes += mv.Bytes
	}
	if len(done) > 0 {
		log.Info(fmt.Sprintf("moved %d %s on the target instead of copying (%d files)", len(done), plural(len(done), "path", "paths"), ts.Stats.MovedFiles))
	}
	rest := WithoutMoves(plan, done)
	rep := Execute(ctx, rest, srcRoot, rec, exec)
	rep.Plan = plan
	recorded := !rec.(interface{ failedRecord() bool }).failedRecord()
	if err := ts.Store.End(recorded && !rep.Failed() && ctx.Err() == nil); err != nil {
		recorded = false
	}
	if !recorded {
		log.Warn("the state store missed changes; the target is listed again next run")
		_ = ts.Store.Reset()
	}
	ts.Stats.Recorded = recorded
	return rep
}

func (r *recorder) failedRecord() bool { return r.failed.Load() }

// move renames mv.From to mv.To, making To's parent first.
func (ts *StateSync) move(ctx context.Context, b backends.Backend, mv Move) error {
	if parent, _ := backends.Split(mv.To); parent != "" {
		if err := b.Mkdir(ctx, parent); err != nil {
			return fmt.Errorf("mkdir %s: %w", parent, err)
		}
	}
	if err := b.Rename(ctx, mv.From, mv.To); err != nil {
		return fmt.Errorf("rename %s to %s: %w", mv.From, mv.To, err)
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// StateScope is the scope a state store of a run with these exclude
// patterns is made for: a store listed under other patterns misses what
// they hid, so it must be listed again.
func StateScope(excludes []string) string {
	return strings.Join(slices.Sorted(slices.Values(excludes)), "\x00")
}
