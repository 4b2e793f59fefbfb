package main

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/cmd/ferry/config"
	"github.com/ferrysync/ferry/engine"
)

// statusEvery is how often a watch job's status is copied into the metrics.
var statusEvery = 2 * time.Second

// runWatchJob runs a watch: true job on the engine's job runtime until ctx
// ends: one watcher and one scan for the source, a queue, retries and a
// circuit breaker per target. A target that is down at the start is opened
// again by its prober until it answers.
func runWatchJob(ctx context.Context, j *config.Job, base *slog.Logger, m *engine.Metrics, s stateSettings) error {
	log := base.With("job", j.Name)
	opts := engine.JobOptions{
		Source:   j.Source,
		Mode:     engineMode(j.Mode),
		Excludes: j.Exclude,
		Logger:   log,
	}
	var versions *engine.Versions
	if j.Mode == config.Backup {
		versions = &engine.Versions{Dir: j.BackupDir, Keep: engine.Keep{Count: j.Keep.Count, Age: j.Keep.Age}}
		opts.Excludes = append(slices.Clone(j.Exclude), engine.ExcludeVersions(j.BackupDir))
	}
	for _, t := range j.Targets {
		tlog := targetLogger(base, j.Name, t.Name)
		onReconnect := reconnects(m, j.Name, t.Name)
		lb := &lazyBackend{name: t.Name, open: func(ctx context.Context) (backends.Backend, error) {
			return configTargetOpener(ctx, t, tlog, onReconnect)
		}}
		defer lb.Close()
		var b backends.Backend = lb
		if versions != nil {
			// Files the runtime replaces go to backup_dir first; deleted
			// ones stay, as backup mode never deletes.
			b = engine.KeepVersions(lb, versions, 0, tlog)
		}
		exec := execOptions(t)
		jt := engine.JobTarget{Name: t.Name, Backend: b, ModifyWindow: modifyWindow(t), Exec: &exec}
		ss, st, err := openTargetState(s, j, t, tlog)
		if err != nil {
			return err
		}
		if st != nil {
			defer st.Close()
			jt.State = ss
		}
		if t.Type == config.Local {
			jt.LocalPath = t.Path
		}
		opts.Targets = append(opts.Targets, jt)
	}
	job, err := engine.NewJob(opts)
	if err != nil {
		return err
	}
	if m != nil {
		var wg sync.WaitGroup
		pctx, stop := context.WithCancel(ctx)
		defer func() { stop(); wg.Wait(); m.Live(j.Name, nil) }()
		m.Live(j.Name, func() []engine.TargetState { return watchStates(j.Name, job.Status()) })
		wg.Go(func() { copyWatchMetrics(pctx, j.Name, job, m) })
	}
	return job.Run(ctx)
}

// watchStates maps a watch job's target statuses onto /status.
func watchStates(job string, sts []engine.TargetStatus) []engine.TargetState {
	out := make([]engine.TargetState, len(sts))
	for i, s := range sts {
		st := engine.TargetState{Job: job, Target: s.Name, Kind: "watch", State: "watching",
			Files: int64(s.Uploaded), Bytes: s.UploadedBytes, Failed: int64(s.Failed),
			Queued: s.Queued + s.InFlight, LastError: s.LastError}
		switch {
		case s.Down:
			st.State = "down"
		case !s.Synced:
			st.State = "syncing"
		}
		out[i] = st
	}
	return out
}

// copyWatchMetrics adds what a watch job did to the Prometheus counters,
// every statusEvery, until ctx ends.
func copyWatchMetrics(ctx context.Context, job string, j *engine.Job, m *engine.Metrics) {
	last := map[string]engine.Counts{}
	tick := time.NewTicker(statusEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		for _, s := range j.Status() {
			prev := last[s.Name]
			cur := engine.Counts{Files: int64(s.Uploaded), Bytes: s.UploadedBytes, Retries: int64(s.Retrying), Errors: int64(s.Failed)}
			m.Add(job, s.Name, engine.Counts{Files: cur.Files - prev.Files, Bytes: cur.Bytes - prev.Bytes,
				Retries: cur.Retries - prev.Retries, Errors: cur.Errors - prev.Errors})
			last[s.Name] = cur
			switch {
			case s.Down:
				m.Down(job, s.Name)
			case s.Synced && s.Queued == 0 && s.InFlight == 0:
				m.Succeeded(job, s.Name, now)
			}
		}
		m.Snapshot() // refreshes the queue gauges
	}
}
