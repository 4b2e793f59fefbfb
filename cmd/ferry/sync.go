package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/engine"
)

// syncFlags are the flags of `ferry sync`.
type syncFlags struct {
	copyFlags
	checksum  bool
	maxDelete int
	dryRun    bool
	progress  bool
	// progressEvery is the interval of progress log lines off a terminal.
	progressEvery time.Duration
}

func newSyncCmd(g *globalOptions) *cobra.Command {
	f := syncFlags{progressEvery: 5 * time.Second}
	cmd := &cobra.Command{
		Use:   "sync [flags] SOURCE TARGET",
		Short: "Make TARGET a copy of the local directory SOURCE",
		Long: `Copy new and changed files from the local directory SOURCE to TARGET.
In mirror mode (the default) files TARGET has and SOURCE lacks are deleted;
in backup mode nothing is ever deleted.

TARGET is a local directory (created if its parent exists) or a URL.

Without --state every run lists the whole target. With --state (or
--state-dir) what TARGET holds is kept in a state file (under
$XDG_STATE_HOME/ferry, else ~/.local/state/ferry): the next run plans from
it without listing TARGET, and files renamed in SOURCE are moved on TARGET
instead of copied again. TARGET is listed in full again when the last full
listing is older than --target-rescan-every (default 24h) or with
--rescan-target, and changes made on it behind ferry's back are repaired.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError(fmt.Errorf("sync takes SOURCE and TARGET, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSync(cmd.Context(), g, &f, args[0], args[1], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	f.copyFlags.register(fl, false)
	fl.BoolVar(&f.checksum, "checksum", false, "compare files of equal size by SHA-256, not only size and mtime")
	fl.IntVar(&f.maxDelete, "max-delete", -1, "refuse to delete more than `N` entries in one run (-1: no cap)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan, one operation per line, and change nothing")
	fl.BoolVar(&f.progress, "progress", false, "show progress (a bar on a terminal, log lines otherwise)")
	fl.DurationVar(&f.progressEvery, "progress-interval", f.progressEvery, "time between progress log lines off a terminal")
	_ = fl.MarkHidden("progress-interval")
	return cmd
}

func (f *syncFlags) validate() (copySetup, error) {
	s, err := f.copyFlags.validate()
	if err != nil {
		return s, err
	}
	if f.progressEvery <= 0 {
		return s, usageError(fmt.Errorf("--progress-interval %v: want a positive duration", f.progressEvery))
	}
	if f.maxDelete < -1 {
		return s, usageError(fmt.Errorf("--max-delete %d: want -1 (no cap) or more", f.maxDelete))
	}
	return s, nil
}

func runSync(ctx context.Context, g *globalOptions, f *syncFlags, source, target string, stdout, stderr io.Writer) error {
	setup, err := f.validate()
	if err != nil {
		return err
	}
	logw := &switchWriter{w: stderr}
	log, err := newLogger(g, logw)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(source); err != nil || !fi.IsDir() {
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Exit 1, not 2: a source that was there yesterday may be an
			// unmounted disk today, and a cron job must report a failed run.
			return &exitError{code: exitFailed, err: fmt.Errorf("source %s: no such directory; nothing was changed on the target", source)}
		case err != nil:
			return &exitError{code: exitFailed, err: fmt.Errorf("source %s: %w; nothing was changed on the target", source, err)}
		}
		return usageErrorf("source %s: not a directory", source)
	}
	if dir, ok := localTargetPath(target); ok {
		if err := checkNesting(source, dir); err != nil {
			return err
		}
	}
	// The target is opened by the engine while it walks the source: a
	// dial spends most of its time waiting for the server.
	open := func(ctx context.Context) (backends.Backend, error) {
		b, err := openTarget(ctx, target, targetOptions{fsync: f.fsync, dryRun: f.dryRun, logger: log, ssh: &f.ssh, s3: &f.s3})
		if err == nil {
			return b, nil
		}
		var e *exitError
		if !errors.As(err, &e) && exitCode(err) != exitUnreachable {
			err = &exitError{code: exitUsage, err: err}
		}
		return nil, &openError{err}
	}

	counter := &engine.Counter{}
	opts := engine.SyncOptions{
		Source:    source,
		Open:      open,
		Mode:      setup.mode,
		Excludes:  f.excludes,
		Checksum:  f.checksum,
		MaxDelete: f.maxDelete,
		DryRun:    f.dryRun,
		Logger:    log,
		// Without it every file on an sftp:// target would differ in
		// mtime from its source, and every run would copy it again.
		ModifyWindow: specModifyWindow(target),
		Exec: engine.ExecOptions{
			Transfers: f.transfers,
			Retries:   setup.retries,
			BWLimit:   setup.bwlimit,
			Progress:  counter,
			Logger:    log,
		},
	}
	if f.state.enabled() && !f.dryRun {
		ss, st, err := f.state.open("sync", target, f.excludes, log)
		if err != nil {
			return &exitError{code: exitFailed, err: err}
		}
		defer st.Close()
		opts.State = ss
	}
	stop := func() {}
	if f.progress && !f.dryRun && !g.quiet {
		stop = showProgress(counter, stderr, logw, log, f.progressEvery)
	}
	if scheme, ok := urlScheme(target); ok && scheme == "sftp" {
		procs := newOneProcWhileSending(counter)
		opts.Exec.Progress = procs
		defer procs.restore()
	}
	rep, err := engine.Sync(ctx, opts)
	stop()
	if f.dryRun && err == nil {
		for _, op := range rep.Plan.Ops {
			fmt.Fprintln(stdout, op)
		}
	}
	if oe := (*openError)(nil); errors.As(err, &oe) {
		return oe.err // as it was said, without the engine's wrapping
	}
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			if !g.quiet {
				printSummary(stdout, &rep, f.dryRun)
			}
			return fmt.Errorf("interrupted: %w; partial uploads are kept and resumed by the next run", err)
		}
		return err
	}
	if g.quiet {
		for _, p := range rep.Problems {
			fmt.Fprintf(stderr, "ferry: %s\n", oneLine(p))
		}
	} else {
		printSummary(stdout, &rep, f.dryRun)
		if opts.State != nil {
			printStateSummary(stdout, opts.State)
		}
	}
	return reportError(&rep)
}

// reportError turns a report's failures into the run's error (exit 1).
func reportError(rep *engine.Report) error {
	var msgs []string
	if n := len(rep.Problems); n > 0 {
		msgs = append(msgs, fmt.Sprintf("%d %s failed", n, plural(n, "path", "paths")))
	}
	if rep.DeletesRefused != nil {
		msgs = append(msgs, fmt.Sprintf("deletes refused: %v", rep.DeletesRefused))
	}
	if len(msgs) == 0 {
		return nil
	}
	msg := msgs[0]
	if len(msgs) > 1 {
		msg += "; " + msgs[1]
	}
	return &exitError{code: exitFailed, err: errors.New(msg)}
}

func printSummary(w io.Writer, rep *engine.Report, dryRun bool) {
	if dryRun {
		var up, del int
		var bytes int64
		for _, op := range rep.Plan.Ops {
			switch op.Kind {
			case engine.OpUpload:
				up++
				bytes += op.Src.Size
			case engine.OpDelete:
				del++
			}
		}
		fmt.Fprintf(w, "dry run: would copy %d %s (%s), delete %d; nothing changed\n",
			up, plural(up, "file", "files"), formatBytes(bytes), del)
		return
	}
	resumed := ""
	if rep.ResumedBytes > 0 {
		resumed = fmt.Sprintf(", %s resumed", formatBytes(rep.ResumedBytes))
	}
	fmt.Fprintf(w, "copied %d %s (%s%s), deleted %d, failed %d, in %s\n",
		rep.Uploaded, plural(rep.Uploaded, "file", "files"), formatBytes(rep.UploadedBytes), resumed,
		rep.Deleted, len(rep.Problems), rep.Duration.Round(time.Millisecond))
	if n := len(rep.Skipped); n > 0 {
		fmt.Fprintf(w, "skipped %d %s (see the warnings above)\n", n, plural(n, "path", "paths"))
	}
	if n := len(rep.Vanished); n > 0 {
		fmt.Fprintf(w, "%d source %s vanished during the run\n", n, plural(n, "file", "files"))
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// openError is a failure to open the target, with its exit code decided.
type openError struct{ err error }

func (e *openError) Error() string { return e.err.Error() }
func (e *openError) Unwrap() error { return e.err }
