package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/cmd/ferry/config"
	"github.com/ferrysync/ferry/engine"
)

// defaultBackupDir is backup_dir when a job does not set it.
const defaultBackupDir = ".ferry-versions"

// targetArgs names a target for ls, versions and restore: a target spec as
// sync takes it, or with -c a JOB/TARGET of a config file.
type targetArgs struct {
	config    string
	backupDir string
	ssh       sshFlags
	s3        s3Flags
}

func (a *targetArgs) register(fl *pflag.FlagSet) {
	fl.StringVarP(&a.config, "config", "c", "", "read the target from this config `file`; TARGET is then JOB/TARGET")
	fl.StringVar(&a.backupDir, "backup-dir", defaultBackupDir, "where old versions lie, relative to the target root (with -c: the job's backup_dir)")
	a.ssh.register(fl)
	a.s3.register(fl)
}

// openedTarget is a target ready to read.
type openedTarget struct {
	b backends.Backend
	// path is the PATH part of a -c JOB/TARGET/PATH spec.
	path string
	// versions is the backup_dir, "" when the job keeps none.
	versions string
}

// open resolves spec and opens its target. Config and name errors are
// usage errors (exit 2), an unreachable target exit 3, others exit 1.
func (a *targetArgs) open(ctx context.Context, spec string, g *globalOptions, stderr io.Writer) (openedTarget, error) {
	log, err := newLogger(g, stderr)
	if err != nil {
		return openedTarget{}, err
	}
	if a.config == "" {
		b, err := openTarget(ctx, spec, targetOptions{logger: log, ssh: &a.ssh, s3: &a.s3})
		if err != nil {
			return openedTarget{}, openFailed(err)
		}
		return openedTarget{b: b, versions: a.backupDir}, nil
	}
	cfg, err := config.Load(a.config)
	if err != nil {
		return openedTarget{}, configError(stderr, err)
	}
	job, target, path := splitJobTarget(spec)
	j, t, err := findTarget(cfg, job, target)
	if err != nil {
		return openedTarget{}, err
	}
	if err := backends.CheckPath(path); err != nil {
		return openedTarget{}, usageErrorf("%s: %w", spec, err)
	}
	if t.Type == config.Local {
		// Opening would create a missing local target; reading one must not.
		if fi, err := os.Stat(t.Path); err != nil || !fi.IsDir() {
			return openedTarget{}, &exitError{code: exitFailed, err: fmt.Errorf("target %s/%s: %s is not a directory", j.Name, t.Name, t.Path)}
		}
	}
	b, err := configTargetOpener(ctx, t, log, nil)
	if err != nil {
		return openedTarget{}, openFailed(err)
	}
	return openedTarget{b: b, path: path, versions: j.BackupDir}, nil
}

func openFailed(err error) error {
	var e *exitError
	if errors.As(err, &e) || exitCode(err) == exitUnreachable {
		return err
	}
	return &exitError{code: exitFailed, err: err}
}

// splitJobTarget splits JOB/TARGET[/PATH]; names never hold a slash.
func splitJobTarget(spec string) (job, target, path string) {
	job, rest, _ := strings.Cut(spec, "/")
	target, path, _ = strings.Cut(rest, "/")
	return job, target, strings.TrimSuffix(path, "/")
}

func findTarget(cfg *config.Config, job, target string) (*config.Job, *config.Target, error) {
	var jobs []string
	for _, j := range cfg.Jobs {
		jobs = append(jobs, j.Name)
		if j.Name != job {
			continue
		}
		var names []string
		for _, t := range j.Targets {
			if t.Name == target {
				return j, t, nil
			}
			names = append(names, t.Name)
		}
		return nil, nil, usageErrorf("job %s has no target %q (it has %s)", job, target, strings.Join(names, ", "))
	}
	return nil, nil, usageErrorf("%s has no job %q (it has %s); name a target as JOB/TARGET", cfg.File, job, strings.Join(jobs, ", "))
}

// parseAt reads a --at time: RFC 3339, a version stamp, or a date and time
// in the local zone ("2026-11-25 16:15", seconds optional, or a day).
func parseAt(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(engine.VersionStampFormat, s); err == nil {
		return t, nil
	}
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--at %q: want RFC 3339 (2026-11-25T16:15:00Z) or a local date and time (2026-11-25 16:15)", s)
}

type restoreFlags struct {
	targetArgs
	at        string
	path      string
	overwrite bool
	transfers int
	retries   int
	progress  bool
}

func newRestoreCmd(g *globalOptions) *cobra.Command {
	var f restoreFlags
	cmd := &cobra.Command{
		Use:   "restore [flags] TARGET DEST",
		Short: "Copy files from a target back to a local folder, as they are or were",
		Long: `Copy from TARGET to the local folder DEST (created if missing).

TARGET is a target as sync takes it (pick a part of it with --path), or with
-c ferry.yaml JOB/TARGET[/PATH]. A folder PATH lands in DEST/<its name>.

--at TIME restores the state at TIME from the live tree and the old versions
in backup_dir: for each file the copy that was on the target at TIME; files
created after TIME, or deleted before it, are left out. A version folder
stamped S holds what runs before S left, so TIME equal to S is after run S.
TIME is RFC 3339 or a local "2026-11-25 16:15".

Existing local files are never replaced unless --overwrite is given; then
each is moved aside to NAME.ferry-old-<time>. Downloads go to a partial file
and resume where a broken one stopped. Names from the target that would land
outside DEST, and symlinks that point out of it, are refused and reported.

Exit status: 0 all restored, 1 some failed, 2 usage, 3 target unreachable.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return usageError(fmt.Errorf("restore takes TARGET and DEST, got %d arguments", len(args)))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRestore(cmd.Context(), g, &f, args[0], args[1], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fl := cmd.Flags()
	f.register(fl)
	fl.StringVar(&f.at, "at", "", "restore the state at `TIME` from old versions")
	fl.StringVar(&f.path, "path", "", "restore only this file or folder of the target")
	fl.BoolVar(&f.overwrite, "overwrite", false, "replace existing local files, keeping each aside as NAME.ferry-old-<time>")
	fl.IntVar(&f.transfers, "transfers", engine.DefaultTransfers, "files downloaded in parallel")
	fl.IntVar(&f.retries, "retries", engine.DefaultRetries, "retries of a failed file before giving up on it")
	fl.BoolVar(&f.progress, "progress", false, "show progress (a bar on a terminal, log lines otherwise)")
	return cmd
}

func runRestore(ctx context.Context, g *globalOptions, f *restoreFlags, spec, dest string, stdout, stderr io.Writer) error {
	var at time.Time
	if f.at != "" {
		var err error
		if at, err = parseAt(f.at); err != nil {
			return usageError(err)
		}
	}
	if f.transfers < 1 {
		return usageErrorf("--transfers %d: want at least 1", f.transfers)
	}
	if err := backends.CheckPath(strings.Trim(f.path, "/")); err != nil {
		return usageErrorf("--path: %w", err)
	}
	logw := &switchWriter{w: stderr}
	log, err := newLogger(g, logw)
	if err != nil {
		return err
	}
	t, err := f.open(ctx, spec, g, logw)
	if err != nil {
		return err
	}
	defer t.b.Close()
	path := t.path
	if f.path != "" {
		path = joinPath(path, strings.Trim(f.path, "/"))
	}
	if !at.IsZero() && t.versions == "" {
		return usageErrorf("--at: %s keeps no old versions (not a backup job with backup_dir)", spec)
	}
	retries := f.retries
	if retries == 0 {
		retries = -1
	}
	counter := &engine.Counter{}
	stop := func() {}
	if f.progress && !g.quiet {
		stop = showProgress(counter, stderr, logw, log, 5*time.Second)
	}
	rep, err := engine.Restore(ctx, t.b, dest, engine.RestoreOptions{
		Path: path, At: at, VersionsDir: t.versions, Overwrite: f.overwrite,
		Exec: engine.ExecOptions{Transfers: f.transfers, Retries: retries, Progress: counter, Logger: log},
	})
	stop()
	for _, p := range rep.Problems {
		fmt.Fprintf(stderr, "ferry: %s\n", oneLine(p))
	}
	if !g.quiet {
		fmt.Fprintf(stdout, "restored %d %s (%s downloaded, %s resumed), %d %s, %d unchanged\n",
			rep.Files, plural(rep.Files, "file", "files"), formatBytes(rep.Bytes), formatBytes(rep.Resumed),
			rep.Links, plural(rep.Links, "link", "links"), rep.Unchanged)
		for _, k := range rep.KeptAside {
			fmt.Fprintf(stdout, "kept aside: %s\n", k)
		}
	}
	switch {
	case err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return &exitError{code: exitFailed, err: fmt.Errorf("interrupted: %w; partial downloads are kept and resumed by the next restore", err)}
	case err != nil:
		return openFailed(err)
	}
	return restoreExit(rep.Problems)
}

// restoreExit: 3 when every failure is an unreachable target, else 1.
func restoreExit(problems []engine.Problem) error {
	if len(problems) == 0 {
		return nil
	}
	code := exitUnreachable
	for _, p := range problems {
		if exitCode(p.Err) != exitUnreachable {
			code = exitFailed
		}
	}
	n := len(problems)
	return &exitError{code: code, err: fmt.Errorf("%d %s not restored", n, plural(n, "path", "paths"))}
}

func joinPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "/" + b
}
