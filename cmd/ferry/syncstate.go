package main

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/ferrysync/ferry/engine"
	"github.com/ferrysync/ferry/engine/state"
)

// stateFlags are the target-state flags of `ferry sync`.
type stateFlags struct {
	dir    string
	on     bool
	rescan bool
	every  time.Duration
}

func (f *stateFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.dir, "state-dir", "", "keep what the target holds in `DIR`, so a restart needs no full listing and renames become moves (implies --state)")
	fl.BoolVar(&f.on, "state", false, "keep the target's state in the default state directory ($XDG_STATE_HOME/ferry or ~/.local/state/ferry)")
	fl.BoolVar(&f.rescan, "rescan-target", false, "list the whole target even when its state is trusted, and repair drift")
	fl.DurationVar(&f.every, "target-rescan-every", engine.DefaultTargetRescanEvery, "list the whole target when the last full listing is older than this (0: never)")
}

func (f *stateFlags) enabled() bool { return f.on || f.dir != "" }

// open opens the state of the sync of source to target. The caller closes
// the store it returns.
func (f *stateFlags) open(job, target string, excludes []string, log *slog.Logger) (*engine.StateSync, *state.Store, error) {
	dir := f.dir
	if dir == "" {
		d, err := state.DefaultDir()
		if err != nil {
			return nil, nil, err
		}
		dir = d
	}
	if p, ok := localTargetPath(target); ok {
		if abs, err := filepath.Abs(p); err == nil {
			target = abs
		}
	}
	path := filepath.Join(dir, state.FileName(job, target))
	st, err := state.Open(path, state.Options{Target: target, Scope: engine.StateScope(excludes), Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("target state: %w", err)
	}
	every := f.every
	if every == 0 {
		every = -1 // the engine reads 0 as its default
	}
	return &engine.StateSync{Store: st, Rescan: f.rescan, RescanEvery: every}, st, nil
}

// printStateSummary tells what the state saved a run.
func printStateSummary(w io.Writer, ss *engine.StateSync) {
	s := ss.Stats
	if s.Moves > 0 {
		fmt.Fprintf(w, "moved %d %s on the target (%d %s, %s) instead of copying\n",
			s.Moves, plural(s.Moves, "path", "paths"), s.MovedFiles, plural(s.MovedFiles, "file", "files"), formatBytes(s.MovedBytes))
	}
	if s.Drifted > 0 {
		fmt.Fprintf(w, "%d drifted %s on the target repaired\n", s.Drifted, plural(s.Drifted, "path", "paths"))
	}
}
