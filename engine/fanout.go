package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// FanOutOptions describe one run of a source to several targets.
type FanOutOptions struct {
	Source       string
	Mode         Mode
	Excludes     []string
	Checksum     bool
	MaxDelete    int // <0: no cap
	ModifyWindow time.Duration
	DryRun       bool
	// Versions, in backup mode, keeps old versions (nil: none).
	Versions *Versions
	Targets  []FanOutTarget
	// Logger receives the scan's logs; nil discards them.
	Logger *slog.Logger
}

// FanOutTarget is one target of SyncTargets.
type FanOutTarget struct {
	Name   string
	Target backends.Backend // not closed by SyncTargets
	// Open, when Target is nil, opens the target inside the target's own
	// run, so a slow or failing dial holds up no other target; the backend
	// it returns is closed at the end of the run.
	Open func(ctx context.Context) (backends.Backend, error)
	Exec ExecOptions
	// ModifyWindow, when larger, replaces FanOutOptions.ModifyWindow for
	// this target (1s for targets that keep whole seconds).
	ModifyWindow time.Duration
	Logger       *slog.Logger
	// State, when set, stands in for the listing of this target where it
	// can be trusted, is kept up to date by the run, and turns renames into
	// moves (see StateSync); each target needs its own. A dry run ignores
	// it.
	State *StateSync
}

// TargetResult is what SyncTargets did on one target.
type TargetResult struct {
	Name   string
	Report Report
	// Err is the target's whole-run failure: its listing failed (the
	// backend's class, such as backends.ErrUnreachable, stays in the
	// chain), the run was cancelled, or Report.Err.
	Err error
	// VersionDir is the folder this run's old versions went to ("" when
	// none), Versioned how many were moved there (replaced and archived),
	// Pruned the old version folders removed at the end.
	VersionDir string
	Versioned  int
	Pruned     []string
	// PruneErr is a failed pruning; the run itself is not failed by it.
	PruneErr error
}

// SyncTargets makes every target match the source: one scan of the source,
// shared by all targets, and for each target its own listing, plan and
// execution, all targets at once. Targets are independent: one that fails
// or hangs does not stop or slow the others (each is bounded only by ctx
// and its own ExecOptions).
//
// The error is for failures before any target was touched: bad exclude
// patterns, an unusable source root (wrapping ErrSourceRoot), a failed
// scan, or cancellation; the results are then nil. Otherwise every target
// has a result, in the order of opts.Targets. Safe to call concurrently for
// different targets. On cancel it returns once every target has stopped.
func SyncTargets(ctx context.Context, opts FanOutOptions) ([]TargetResult, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	excludes := opts.Excludes
	if v := opts.Versions; v != nil && opts.Mode == Backup {
		// The versions folder is not listed either: it grows with every run.
		excludes = append(slices.Clone(excludes), ExcludeVersions(v.Dir))
	}
	filter, err := NewFilter(excludes)
	if err != nil {
		return nil, fmt.Errorf("exclude patterns: %w", err)
	}
	if err := checkSourceRoot(opts.Source); err != nil {
		return nil, err
	}
	if len(opts.Targets) == 1 && !opts.DryRun && !opts.Checksum {
		// One target (Sync, and jobs of one target): the scan is planned
		// against the target's state, or its listing, as both go, so that
		// a run holds what differs, not two trees.
		return syncStreamed(ctx, &opts, filter, log)
	}

	// The scan runs beside the listings; each target waits for it. When
	// every target has failed before needing it, it is cut short.
	scanCtx, cancelScan := context.WithCancel(ctx)
	defer cancelScan()
	var (
		src          []backends.FileInfo
		scanProblems []Problem
		scanErr      error
		scanned      = make(chan struct{})
	)
	go func() {
		defer close(scanned)
		src, scanProblems, scanErr = Scan(scanCtx, opts.Source, filter, log)
	}()
	var special []Problem
	waitScan := sync.OnceValue(func() error {
		<-scanned
		if scanErr != nil {
			return fmt.Errorf("scan source %s: %w", opts.Source, scanErr)
		}
		scanProblems = slices.DeleteFunc(scanProblems, func(p Problem) bool {
			if errors.Is(p.Err, ErrSpecialFile) {
				special = append(special, p)
				return true
			}
			return false
		})
		return nil
	})
	var (
		gaveUpMu sync.Mutex
		gaveUp   int
	)
	giveUp := func() {
		gaveUpMu.Lock()
		defer gaveUpMu.Unlock()
		if gaveUp++; gaveUp == len(opts.Targets) {
			cancelScan()
		}
	}

	results := make([]TargetResult, len(opts.Targets))
	var wg sync.WaitGroup
	for i, t := range opts.Targets {
		wg.Go(func() {
			results[i] = syncOne(ctx, &opts, filter, t, giveUp, waitScan, func() ([]backends.FileInfo, []Problem, []Problem) {
				return src, scanProblems, special
			})
		})
	}
	wg.Wait()
	if len(opts.Targets) > 0 && gaveUp == len(opts.Targets) {
		// No target got as far as the scan: their errors say why.
		<-scanned
		return results, ctx.Err()
	}
	if err := waitScan(); err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return results, ctx.Err()
	}
	return results, nil
}

// syncOne lists, plans and executes one target of SyncTargets. giveUp
// tells that the target failed before it needed the scan.
func syncOne(ctx context.Context, o *FanOutOptions, filter *Filter, t FanOutTarget, giveUp func(),
	waitScan func() error, scan func() ([]backends.FileInfo, []Problem, []Problem)) (res TargetResult) {
	start := time.Now()
	res.Name = t.Name
	log := t.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	exec := t.Exec
	if exec.Logger == nil {
		exec.Logger = log
	}
	// A single unnamed target is Sync's: its caller reports the error, so
	// it is not logged here as well.
	fail := func(err error) TargetResult {
		res.Err = err
		if t.Name != "" && ctx.Err() == nil {
			log.Error("target failed", "err", err)
		}
		return res
	}
	defer func() { res.Report.Duration = time.Since(start) }()
	if t.Target == nil {
		if t.Open == nil {
			giveUp()
			return fail(fmt.Errorf("target %s: no backend", t.Name))
		}
		b, err := t.Open(ctx)
		if err != nil {
			giveUp()
			return fail(fmt.Errorf("open target %s: %w", t.Name, err))
		}
		defer b.Close()
		t.Target = b
	}

	st := t.State
	if o.DryRun {
		st = nil
	}
	list := ListTarget
	if st != nil {
		list = st.list
	}
	dst, partials, listProblems, listErr := list(ctx, t.Target, filter, log)
	switch {
	case listErr == nil:
	case o.DryRun && errors.Is(listErr, backends.ErrNotExist):
		// A dry run may not create the target root; planned against an
		// empty target, it shows what a first run would copy.
		log.Info("target root does not exist yet")
	default:
		giveUp()
		if ctx.Err() != nil {
			res.Err = ctx.Err()
			return res
		}
		return fail(fmt.Errorf("list target%s: %w", nameSuffix(t.Name), listErr))
	}
	if err := waitScan(); err != nil {
		res.Err = err
		return res
	}
	if ctx.Err() != nil {
		res.Err = ctx.Err()
		return res
	}
	shared, scanProblems, special := scan()
	src := shared
	if o.Checksum {
		// Hashes are filled in per target: each gets its own copy.
		src = slices.Clone(shared)
		if err := hashCandidates(ctx, o.Source, src, dst, t.Target, log); err != nil {
			res.Err = err
			return res
		}
	}
	popts, versions := planOptions(o, t, filter)
	popts.Checksum = o.Checksum
	popts.Incomplete = len(scanProblems)+len(listProblems) > 0
	plan := MakePlan(src, dst, popts)
	for _, p := range plan.Skipped {
		log.Warn("skipped", "path", p.Path, "reason", p.Err)
	}

	var rep Report
	exec.Partials = partials
	mopts := MoveOptions{ModifyWindow: popts.ModifyWindow, IgnoreModes: popts.IgnoreModes}
	switch {
	case o.DryRun:
		rep = Report{Plan: plan, Skipped: plan.Skipped, DeletesRefused: plan.DeletesRefused}
	case versions != nil:
		rep, res = runWithVersions(ctx, plan, o.Source, t.Target, exec, st, mopts, versions, res)
	case st != nil:
		rep = st.execute(ctx, plan, o.Source, t.Target, exec, mopts)
	default:
		rep = Execute(ctx, plan, o.Source, t.Target, exec)
	}
	rep.Problems = append(append(append([]Problem(nil), scanProblems...), listProblems...), rep.Problems...)
	rep.Skipped = append(slices.Clone(special), rep.Skipped...)
	for _, e := range src {
		if e.IsRegular() {
			rep.SourceFiles++
			rep.SourceBytes += e.Size
		}
	}
	res.Report = rep
	if res.Err == nil {
		res.Err = rep.Err
	}
	return res
}

// planOptions are what the planner needs of o and of target t, but for
// Checksum and Incomplete, which depend on the run; versions is o's
// Versions where o's mode keeps them, else nil.
func planOptions(o *FanOutOptions, t FanOutTarget, filter *Filter) (popts PlanOptions, versions *Versions) {
	if o.Mode == Backup {
		versions = o.Versions
	}
	_, symlinks := backends.As[backends.Symlinker](t.Target)
	_, chmod := backends.As[backends.Chmoder](t.Target)
	popts = PlanOptions{
		Mode:         o.Mode,
		MaxDelete:    o.MaxDelete,
		ModifyWindow: max(o.ModifyWindow, t.ModifyWindow),
		Symlinks:     symlinks,
		Filter:       filter,
		IgnoreModes:  !chmod,
	}
	if versions != nil {
		popts.Versions = versions.Dir
	}
	return popts, versions
}

// nameSuffix is " NAME" for a named target, "" for Sync's one target.
func nameSuffix(name string) string {
	if name == "" {
		return ""
	}
	return " " + name
}

// runWithVersions executes a backup plan that keeps old versions: archives
// first (paths the source lacks, which nothing else touches), then the
// plan through a versionKeeper, then pruning when the run completed. With
// a state (st not nil), the archived paths are recorded as gone, and the
// rest runs through st with the keeper as its target, so that the moves of
// old versions into the versions folder (outside the state's scope) are
// not recorded.
func runWithVersions(ctx context.Context, plan Plan, source string, target backends.Backend,
	exec ExecOptions, st *StateSync, mopts MoveOptions, v *Versions, res TargetResult) (Report, TargetResult) {
	now := v.now()
	_, times, err := listStamps(ctx, target, v.Dir)
	if err != nil {
		res.Err = err
		return Report{Plan: plan}, res
	}
	res.VersionDir = backends.Join(v.Dir, nextStamp(now, times))
	keeper := newVersionKeeper(target, res.VersionDir, plan, exec)

	var archives []Op
	rest := plan
	rest.Ops = slices.DeleteFunc(slices.Clone(plan.Ops), func(op Op) bool {
		if op.Kind == OpArchive {
			archives = append(archives, op)
			return true
		}
		return false
	})
	var rep Report
	if st == nil {
		problems := keeper.archive(ctx, archives)
		rep = Execute(ctx, rest, source, keeper, exec)
		rep.Problems = append(problems, rep.Problems...)
	} else {
		rep = archiveRecorded(ctx, st, keeper, archives, exec.Logger)
		r := st.execute(ctx, rest, source, keeper, exec, mopts)
		r.Problems = append(rep.Problems, r.Problems...)
		rep = r
	}
	rep.Plan = plan
	res.Versioned = keeper.movedCount()
	if st != nil && res.Versioned > 0 {
		// A listing shows the versions folder itself (not what it holds):
		// record it, so that the next full listing finds no drift in it.
		var err error
		for d := v.Dir; d != "" && d != "." && err == nil; d, _ = backends.Split(d) {
			err = st.Store.PutNew(backends.FileInfo{Path: d, Mode: fs.ModeDir | 0o755})
		}
		if err == nil {
			err = st.Store.Flush()
		}
		if err != nil {
			exec.Logger.Warn("the state store missed changes; the target is listed again next run", "err", err)
			_ = st.Store.Reset()
		}
	}
	if rep.Err == nil && ctx.Err() == nil {
		res.Pruned, res.PruneErr = PruneVersions(ctx, target, v.Dir, v.Keep, now)
		if res.PruneErr != nil {
			exec.Logger.Warn("pruning old versions failed", "err", res.PruneErr)
		}
	}
	return rep, res
}

// archiveRecorded archives ops through the keeper with the state kept:
// the paths are marked in flight first and recorded as gone once moved
// away. When one fails, or ctx ends (the keeper then skips the rest without
// saying which it moved), the store cannot tell what those paths hold now,
// and is reset, so the next run lists the target.
func archiveRecorded(ctx context.Context, st *StateSync, keeper *versionKeeper, archives []Op, log *slog.Logger) Report {
	if len(archives) == 0 {
		return Report{}
	}
	paths := make([]string, len(archives))
	for i, op := range archives {
		paths[i] = op.Path
	}
	if err := st.Store.Begin(paths); err != nil {
		log.Warn("state not kept for this run", "err", err)
		_ = st.Store.Reset()
		return Report{Problems: keeper.archive(ctx, archives)}
	}
	problems := keeper.archive(ctx, archives)
	cancelled := ctx.Err() != nil
	failed := map[string]bool{}
	for _, p := range problems {
		failed[p.Path] = true
	}
	var err error
	for _, p := range paths {
		if !cancelled && !failed[p] && err == nil {
			err = st.Store.Delete(p)
		}
	}
	if err == nil {
		err = st.Store.Flush()
	}
	if len(problems) > 0 || cancelled || err != nil {
		log.Warn("the state store missed changes; the target is listed again next run")
		_ = st.Store.Reset()
	}
	return Report{Problems: problems}
}

// escapeGlob makes a literal path into an exclude pattern matching only it.
func escapeGlob(p string) string {
	var b strings.Builder
	for _, r := range p {
		if strings.ContainsRune(`*?[]{}\!`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
