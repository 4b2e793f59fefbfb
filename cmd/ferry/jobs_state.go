package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/ferrysync/ferry/cmd/ferry/config"
	"github.com/ferrysync/ferry/engine"
	"github.com/ferrysync/ferry/engine/state"
)

// stateSettings say where the jobs of `ferry run` keep their targets'
// state, and whether this process lists every target once anyway.
type stateSettings struct {
	dir    string // the config's state_dir
	rescan bool   // --rescan-target
}

// targetID names where a configured target's files are, so that a state
// file follows the place, not the name: a target moved elsewhere gets a new
// one, and a file found for another place is rebuilt.
func targetID(t *config.Target) string {
	switch t.Type {
	case config.Local:
		return "file://" + t.Path
	case config.SFTP:
		host := t.Host
		if t.Port != 0 {
			host = net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
		}
		return "sftp://" + t.User + "@" + host + "/" + t.Path
	case config.S3:
		return "s3://" + t.Endpoint + "/" + t.Bucket + "/" + t.Path
	}
	return string(t.Type) + ":" + t.Path
}

// stateScope is the scope of a job's state: its excludes and, in backup
// mode, its versions folder, which no listing holds.
func stateScope(j *config.Job) string {
	ex := j.Exclude
	if j.Mode == config.Backup {
		ex = append(slices.Clone(ex), engine.ExcludeVersions(j.BackupDir))
	}
	return engine.StateScope(ex)
}

// statePath is the state file of one job's target.
func statePath(dir string, j *config.Job, t *config.Target) string {
	return filepath.Join(dir, state.FileName(j.Name+"-"+t.Name, targetID(t)))
}

// openTargetState opens the state of one target of a job, or returns nil
// when the job keeps none. A state file held by another ferry fails (two
// runs of one job against one target must not interleave); any other
// failure is logged and the target runs without state, listed in full as
// without one. The caller closes the store.
func openTargetState(s stateSettings, j *config.Job, t *config.Target, log *slog.Logger) (*engine.StateSync, *state.Store, error) {
	if !j.State {
		return nil, nil, nil
	}
	if s.dir == "" {
		log.Warn("no state directory (set state_dir, or HOME or XDG_STATE_HOME): the target is listed in full")
		return nil, nil, nil
	}
	st, err := state.Open(statePath(s.dir, j, t), state.Options{Target: targetID(t), Scope: stateScope(j), Logger: log})
	switch {
	case errors.Is(err, state.ErrInUse):
		return nil, nil, fmt.Errorf("target state %s: %w (is another ferry running this job?)", statePath(s.dir, j, t), err)
	case err != nil:
		log.Warn("target state cannot be opened: the target is listed in full", "err", err)
		return nil, nil, nil
	}
	every := j.TargetRescanEvery
	if every == 0 {
		every = -1 // the engine reads 0 as its default
	}
	return &engine.StateSync{Store: st, Rescan: s.rescan, RescanEvery: every}, st, nil
}

// logStateStats tells what the state did for one run of a target.
func logStateStats(log *slog.Logger, s engine.StateStats) {
	a := []any{"listed", s.Listed}
	if s.Listed {
		a = append(a, "why", s.Why)
	}
	if s.Drifted > 0 {
		a = append(a, "drifted", s.Drifted)
	}
	if s.Moves > 0 {
		a = append(a, "moves", s.Moves, "moved_files", s.MovedFiles, "moved_bytes", s.MovedBytes)
	}
	if s.Verified > 0 {
		a = append(a, "verified", s.Verified)
	}
	if !s.Listed && s.Drifted == 0 && s.Moves == 0 && s.Verified == 0 {
		log.Debug("target state trusted: planned without a listing")
		return
	}
	log.Info("target state", a...)
}
