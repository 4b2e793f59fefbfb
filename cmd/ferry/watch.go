package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/engine"
)

// watchFlags are the flags of `ferry watch`.
type watchFlags struct {
	copyFlags
	rescanEvery time.Duration
	debounce    time.Duration
	settle      time.Duration
	workers     int
	// statusEvery is the interval of status log lines off a terminal.
	statusEvery time.Duration
}

func newWatchCmd(g *globalOptions) *cobra.Command {
	f := watchFlags{statusEvery: 30 * time.Second}
	cmd := &cobra.Command{
		Use:   "watch [flags] SOURCE TARGET...",
		Short: "Keep TARGETs mirrored to the local directory SOURCE as it changes",
		Long: `Sync SOURCE to every TARGET fully, then watch SOURCE and bring each change
to every target within a fraction of a second. Each target has its own queue:
a target that is slow or down keeps its changes queued (one entry per path)
and catches up when it is back, without holding up the others. A full rescan
runs every --rescan-every as a safety net.

In mirror mode (the default) deletes and renames reach the targets (a rename
is a move on the target); in backup mode nothing is ever deleted.

With --state (or --state-dir) what each target holds is kept in a state
file, as ferry sync --state keeps it: the first sync plans from it without
listing the target, every change is recorded as it lands, and the target is
listed again every --target-rescan-every (default 24h) to repair changes
made on it behind ferry's back.

Stop with Ctrl-C or SIGTERM: uploads in flight are cut and resumed by the next
run. A second signal exits at once.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usageError(fmt.Errorf("watch takes SOURCE and at least one TARGET, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWatch(cmd.Context(), g, &f, args[0], args[1:], cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	f.copyFlags.register(fl, true)
	fl.DurationVar(&f.rescanEvery, "rescan-every", engine.DefaultRescanEvery, "period of the full rescan of the source (0: never)")
	fl.DurationVar(&f.debounce, "debounce", 0, "quiet time after a path's last event before it is synced (default 100ms)")
	fl.DurationVar(&f.settle, "settle", 0, "time a file's size and mtime must stay unchanged before upload (default 150ms)")
	fl.IntVar(&f.workers, "workers", engine.DefaultJobWorkers, "changes handled at once per target")
	fl.DurationVar(&f.statusEvery, "status-interval", f.statusEvery, "time between status log lines off a terminal")
	return cmd
}

func runWatch(ctx context.Context, g *globalOptions, f *watchFlags, source string, targets []string, stderr io.Writer) error {
	setup, err := f.copyFlags.validate()
	if err != nil {
		return err
	}
	switch {
	case f.rescanEvery < 0:
		return usageErrorf("--rescan-every %v: want 0 (never) or a positive duration", f.rescanEvery)
	case f.debounce < 0 || f.settle < 0:
		return usageErrorf("--debounce and --settle: want positive durations")
	case f.workers < 1:
		return usageErrorf("--workers %d: want at least 1", f.workers)
	case f.statusEvery <= 0:
		return usageErrorf("--status-interval %v: want a positive duration", f.statusEvery)
	}
	logw := &switchWriter{w: stderr}
	log, err := newLogger(g, logw)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(source); err != nil || !fi.IsDir() {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return usageErrorf("source %s: no such directory", source)
		case err != nil:
			return usageErrorf("source %s: %v", source, err)
		}
		return usageErrorf("source %s: not a directory", source)
	}

	var jts []engine.JobTarget
	defer func() {
		for _, t := range jts {
			t.Backend.Close()
		}
	}()
	for _, spec := range targets {
		jt := engine.JobTarget{Name: spec}
		if dir, ok := localTargetPath(spec); ok {
			// A target inside the source is excluded by the job, with a
			// warning; the other nestings would feed the job its own
			// output.
			if err := checkNesting(source, dir); err != nil && !errors.Is(err, errTargetInSource) {
				return err
			}
			jt.LocalPath = dir
		}
		jt.ModifyWindow = specModifyWindow(spec)
		topts := targetOptions{fsync: f.fsync, logger: log.With("target", spec), ssh: &f.ssh, s3: &f.s3}
		b, err := openTarget(ctx, spec, topts)
		switch {
		case errors.Is(err, backends.ErrUnreachable) && !errors.Is(err, backends.ErrAuth):
			// A daemon starts with the target down and catches it up once
			// it answers: the job's breaker probes it with backoff.
			log.Warn("target unreachable at start; it will be synced once it answers", "target", spec, "err", err)
			spec := spec
			lb := &lazyBackend{name: spec, open: func(ctx context.Context) (backends.Backend, error) {
				return openTarget(ctx, spec, topts)
			}}
			b = lb
		case err != nil:
			var e *exitError
			if errors.As(err, &e) || exitCode(err) == exitUnreachable {
				return err
			}
			return &exitError{code: exitUsage, err: err}
		}
		jt.Backend = b
		if f.state.enabled() {
			// The state file of a target is the one `ferry sync --state`
			// keeps for it: both commands see the same target.
			ss, st, err := f.state.open("sync", spec, f.excludes, log.With("target", spec))
			if err != nil {
				b.Close()
				return &exitError{code: exitFailed, err: err}
			}
			defer st.Close()
			jt.State = ss
		}
		jts = append(jts, jt)
	}
	rescan := f.rescanEvery
	if rescan == 0 {
		rescan = -1
	}
	job, err := engine.NewJob(engine.JobOptions{
		Source:      source,
		Targets:     jts,
		Mode:        setup.mode,
		Excludes:    f.excludes,
		Workers:     f.workers,
		Debounce:    f.debounce,
		Settle:      f.settle,
		RescanEvery: rescan,
		Logger:      log,
		Exec: engine.ExecOptions{
			Transfers: f.transfers,
			Retries:   setup.retries,
			BWLimit:   setup.bwlimit,
			Logger:    log,
		},
	})
	if err != nil {
		return err
	}

	// The first signal cancels ctx (see main); a second one exits at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		for n := 1; ; n++ {
			select {
			case <-finished:
				return
			case <-sigs:
			}
			if n > 1 {
				fmt.Fprintln(stderr, "ferry: stopped at once")
				os.Exit(130)
			}
			log.Info("stopping: cutting uploads in flight (send the signal again to exit at once)")
			cancel()
		}
	}()

	log.Info("watching", "source", source, "targets", len(jts), "mode", setup.mode)
	stop := showStatus(job, stderr, logw, log, f.statusEvery, g.quiet)
	err = job.Run(ctx)
	stop()
	for _, s := range job.Status() {
		log.Info("target", statusAttrs(s)...)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// showStatus shows the job's targets until the returned stop is called: a
// line per target redrawn in place on a terminal (logs are printed above
// it), a log line per target every interval otherwise, only when something
// changed.
func showStatus(job *engine.Job, stderr io.Writer, logw *switchWriter, log *slog.Logger, interval time.Duration, quiet bool) (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	tty := isTerminal(stderr) && !quiet
	var board *statusBoard
	if tty {
		interval = 250 * time.Millisecond
		board = &statusBoard{w: stderr}
		logw.set(board)
	}
	go func() {
		defer close(ended)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		last := map[string]string{}
		for {
			select {
			case <-done:
				if tty {
					logw.set(stderr)
				}
				return
			case <-tick.C:
			}
			sts := job.Status()
			if tty {
				lines := make([]string, len(sts))
				for i, s := range sts {
					lines[i] = statusLine(s)
				}
				board.draw(lines)
				continue
			}
			for _, s := range sts {
				line := statusLine(s)
				if last[s.Name] == line {
					continue
				}
				last[s.Name] = line
				log.Info("status", statusAttrs(s)...)
			}
		}
	}()
	return func() {
		close(done)
		<-ended
	}
}

// statusBoard keeps a block of status lines at the bottom of a terminal;
// text written to it (log lines) goes above the block.
type statusBoard struct {
	mu    sync.Mutex
	w     io.Writer
	lines []string
	shown int // lines of the block on screen
}

func (b *statusBoard) clearLocked(buf *strings.Builder) {
	if b.shown > 0 {
		fmt.Fprintf(buf, "\r\033[%dA\033[J", b.shown)
		b.shown = 0
	}
}

func (b *statusBoard) drawLocked(buf *strings.Builder) {
	for _, l := range b.lines {
		fmt.Fprintf(buf, "%s\n", l)
	}
	b.shown = len(b.lines)
}

func (b *statusBoard) draw(lines []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var buf strings.Builder
	b.clearLocked(&buf)
	b.lines = lines
	b.drawLocked(&buf)
	io.WriteString(b.w, buf.String())
}

func (b *statusBoard) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var buf strings.Builder
	b.clearLocked(&buf)
	buf.Write(p)
	b.drawLocked(&buf)
	if _, err := io.WriteString(b.w, buf.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

func statusLine(s engine.TargetStatus) string {
	state := "up"
	switch {
	case s.Down:
		state = "DOWN since " + s.DownSince.Format(time.TimeOnly)
	case !s.Synced:
		state = "first sync"
	}
	line := fmt.Sprintf("%s [%s] queued %d, in flight %d, done %d, failed %d (uploaded %d, %s; deleted %d; moved %d)",
		s.Name, state, s.Queued, s.InFlight, s.Done, s.Failed, s.Uploaded, formatBytes(s.UploadedBytes), s.Deleted, s.Renamed)
	if s.LastError != "" {
		line += "; last error: " + oneLine(errors.New(s.LastError))
	}
	return line
}

func statusAttrs(s engine.TargetStatus) []any {
	a := []any{"target", s.Name, "up", !s.Down, "synced", s.Synced, "queued", s.Queued, "in_flight", s.InFlight,
		"done", s.Done, "failed", s.Failed, "uploaded", s.Uploaded, "deleted", s.Deleted, "moved", s.Renamed}
	if s.LastError != "" {
		a = append(a, "last_error", s.LastError)
	}
	return a
}
