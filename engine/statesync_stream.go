package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/engine/state"
)

// syncStreamed is SyncTargets for one target, in a run that neither
// compares checksums nor is dry. The scan of the source is merged, entry
// by entry as it goes, with the target's state (its records, read in the
// same path order) or, without a trusted state, with a full listing, and
// only what differs is kept for the planner: a run that changes little
// holds the directories in flight, and no copy of the source tree. The
// plan, its execution and the result are those of syncOne; errors are as
// SyncTargets'.
func syncStreamed(ctx context.Context, o *FanOutOptions, filter *Filter, log *slog.Logger) ([]TargetResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := o.Targets[0]
	res := TargetResult{Name: t.Name}
	start := time.Now()
	tlog := t.Logger
	if tlog == nil {
		tlog = slog.New(slog.DiscardHandler)
	}
	exec := t.Exec
	if exec.Logger == nil {
		exec.Logger = tlog
	}
	fail := func(err error) ([]TargetResult, error) {
		res.Err = err
		res.Report.Duration = time.Since(start)
		if t.Name != "" && ctx.Err() == nil {
			tlog.Error("target failed", "err", err)
		}
		return []TargetResult{res}, ctx.Err()
	}
	var pre *preWalk
	if t.Target == nil {
		if t.Open == nil {
			return fail(fmt.Errorf("target %s: no backend", t.Name))
		}
		// The dial is mostly waiting for the server: the source's walk
		// gets going meanwhile.
		pre = startPreWalk(ctx, o.Source, filter, tlog)
		defer pre.close()
		b, err := t.Open(ctx)
		if err != nil {
			return fail(fmt.Errorf("open target %s: %w", t.Name, err))
		}
		defer b.Close()
		t.Target = b
	}
	popts, versions := planOptions(o, t, filter)
	popts.source = pre
	_, chmod := backends.As[backends.Chmoder](t.Target)
	st := t.State
	var (
		sp           statePlanned
		listErr, err error
	)
	if st != nil {
		sp, listErr, err = st.scanPlan(ctx, o.Source, t.Target, filter, popts, tlog)
	} else {
		sp, listErr, err = listPlan(ctx, o.Source, t.Target, filter, popts, tlog)
	}
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case listErr != nil:
		return fail(fmt.Errorf("list target%s: %w", nameSuffix(t.Name), listErr))
	case err != nil:
		return nil, err
	}
	// A socket or fifo in the source is skipped on purpose, every run: a
	// warning, not a failure (the plan did not count it either).
	var special []Problem
	scanProblems := slices.DeleteFunc(sp.problems, func(p Problem) bool {
		if errors.Is(p.Err, ErrSpecialFile) {
			special = append(special, p)
			return true
		}
		return false
	})
	plan := sp.plan
	log.Debug("scanned and planned", "source", sp.entries, "partials", len(sp.partials),
		"problems", len(scanProblems)+len(sp.listProblems), "ops", len(plan.Ops), "took", time.Since(start))
	for _, p := range plan.Skipped {
		tlog.Warn("skipped", "path", p.Path, "reason", p.Err)
	}
	exec.Partials = sp.partials
	mopts := MoveOptions{ModifyWindow: popts.ModifyWindow, IgnoreModes: !chmod}
	var rep Report
	switch {
	case versions != nil:
		rep, res = runWithVersions(ctx, plan, o.Source, t.Target, exec, st, mopts, versions, res)
	case st != nil:
		rep = st.execute(ctx, plan, o.Source, t.Target, exec, mopts)
	default:
		rep = Execute(ctx, plan, o.Source, t.Target, exec)
	}
	rep.Problems = append(append(append([]Problem(nil), scanProblems...), sp.listProblems...), rep.Problems...)
	rep.Skipped = append(special, rep.Skipped...)
	rep.SourceFiles, rep.SourceBytes = sp.files, sp.bytes
	rep.Duration = time.Since(start)
	res.Report = rep
	if res.Err == nil {
		res.Err = rep.Err
	}
	return []TargetResult{res}, ctx.Err()
}

// statePlanned is what scanPlan found.
type statePlanned struct {
	streamed
	partials     []backends.FileInfo
	listProblems []Problem
}

// scanPlan plans the run from a scan of source merged with the store's
// records when they can be trusted, else with a full listing of b that
// rebuilds the store (see StateSync). A record found undecodable during
// the merge empties the store and turns the run into one that lists.
// listErr is a failure to read the target's state or listing (ListTarget's
// errors, or the state file's); err a failure of the scan (Scan's errors).
func (ts *StateSync) scanPlan(ctx context.Context, source string, b backends.Backend, f *Filter, opts PlanOptions, log *slog.Logger) (out statePlanned, listErr, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h, partials, why, err := ts.trust(ctx, b, log)
	if err != nil {
		return out, err, nil
	}
	out.partials = partials
	if why == "" {
		r, err := ts.Store.Reader()
		if err != nil {
			return out, err, nil
		}
		out.streamed, err = planFromSource(ctx, source, f, log, &stateStream{r: r}, opts)
		cerr := r.Close()
		if errors.Is(err, errTargetOrder) {
			// Records out of order were damaged: rebuilt like any other.
			err = fmt.Errorf("state records: %w: %w", state.ErrCorrupt, err)
		}
		var te *targetError
		switch {
		case errors.As(err, &te) && !errors.Is(err, state.ErrCorrupt):
			return out, te.err, nil
		case errors.Is(err, state.ErrCorrupt):
			if why, err = ts.corrupt(err, &h); err != nil {
				return out, err, nil
			}
		case err != nil:
			return out, nil, err
		case cerr != nil:
			return out, cerr, nil
		default:
			log.Debug("target state trusted: planned without a listing", "listed", h.ListedAt.Format(time.RFC3339))
			return out, nil, nil
		}
	}
	return ts.relistPlan(ctx, source, b, f, opts, log, h, why)
}

// relistPlan is scanPlan with a full listing: the target is listed as the
// scan goes (see listPlan), and each entry, as the merge reads it, goes on
// to rebuild the store and count the drift, so that neither the listing
// nor the records are held. The store is trusted again only when the
// listing and the merge both ran to the end with no listing problem.
func (ts *StateSync) relistPlan(ctx context.Context, source string, b backends.Backend, f *Filter, opts PlanOptions, log *slog.Logger, h state.Header, why string) (out statePlanned, listErr, err error) {
	rl, err := ts.startRelist(log, h, why)
	if err != nil {
		return out, err, nil
	}
	lw := newListWalk(ctx, b, f, log)
	out.streamed, err = planFromSource(ctx, source, f, log, &relistStream{listWalk: lw, rl: rl}, opts)
	out.partials, out.listProblems = lw.Close(), lw.problems
	var te *targetError
	switch {
	case errors.As(err, &te):
		return out, te.err, nil
	case err != nil:
		return out, nil, err
	}
	if err := rl.finish(len(lw.problems) > 0); err != nil {
		return out, err, nil
	}
	return out, nil, nil
}

// relistStream is a listWalk whose entries also rebuild the store.
type relistStream struct {
	*listWalk
	rl *relister
}

func (s *relistStream) next() (bool, error) {
	ok, err := s.listWalk.next()
	if ok && err == nil {
		if err = s.rl.Add(*s.cur); err != nil {
			ok = false
		}
	}
	return ok, err
}

// listPlan is scanPlan for a target without state: it is listed as the
// scan goes (see listWalk), and neither tree is held.
func listPlan(ctx context.Context, source string, b backends.Backend, f *Filter, opts PlanOptions, log *slog.Logger) (out statePlanned, listErr, err error) {
	lw := newListWalk(ctx, b, f, log)
	out.streamed, err = planFromSource(ctx, source, f, log, lw, opts)
	out.partials, out.listProblems = lw.Close(), lw.problems
	var te *targetError
	if errors.As(err, &te) {
		return out, te.err, nil
	}
	return out, nil, err
}

// stateStream is a targetStream over the store's records.
type stateStream struct{ r *state.Reader }

func (s *stateStream) next() (bool, error)              { return s.r.Next(), nil }
func (s *stateStream) appendPath(b []byte) []byte       { return s.r.AppendPath(b) }
func (s *stateStream) meta() (backends.FileInfo, error) { return s.r.Meta() }
func (s *stateStream) info() (backends.FileInfo, error) { return s.r.Info() }
func (s *stateStream) incomplete() bool                 { return false }
