package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferrysync/ferry/cmd/ferry/config"
	"github.com/ferrysync/ferry/engine"
)

func newRunCmd(g *globalOptions) *cobra.Command {
	var path string
	var once, rescan bool
	cmd := &cobra.Command{
		Use:   "run -c FILE [--once] [--rescan-target]",
		Short: "Run the jobs of a config file",
		Long: `Run every job of the config file: watch jobs mirror changes continuously,
scheduled jobs run on their interval or cron schedule, the others run once.
With --once every job runs one time, a summary table is printed, and the exit
status says how it went (0 all done, 1 some files failed, 2 config error,
3 a target unreachable or refusing our credentials).

A config whose jobs all run once is run as with --once.

Each job keeps, per target, a state file of what the target holds (under
state_dir, default $XDG_STATE_HOME/ferry or ~/.local/state/ferry): a run
plans from it without listing the whole target, renames become moves, and a
restarted watch job copies nothing twice. A target is listed in full again,
and changes made on it behind ferry's back repaired, once its last full
listing is target_rescan_every old (default 1d), or with --rescan-target.
state: false on a job lists its targets on every run instead.

SIGHUP reloads the config: added, removed and changed jobs are (re)started,
unchanged jobs keep running. SIGINT or SIGTERM stop gracefully; a second
signal stops at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if path == "" {
				return usageErrorf("run needs the config file: -c FILE")
			}
			logFormat := ""
			if f := cmd.Flag("log-format"); f != nil && f.Changed {
				logFormat = g.logFormat
			}
			r := &runner{path: path, g: *g, logFormat: logFormat, stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), rescan: rescan}
			if once {
				return r.once(cmd.Context())
			}
			return r.daemon(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "the config `file` (ferry.yaml)")
	cmd.Flags().BoolVar(&once, "once", false, "run every job one time, print a summary and exit")
	cmd.Flags().BoolVar(&rescan, "rescan-target", false, "list every target in full on the first run of each job, even when its state is trusted, and repair drift")
	return cmd
}

// runner runs the jobs of one config file.
type runner struct {
	path      string
	g         globalOptions
	logFormat string // from --log-format when given, else the config's
	stdout    io.Writer
	stderr    io.Writer

	log     *slog.Logger
	metrics *engine.Metrics
	cfg     *config.Config // as loaded at the start

	// exit stops the process on a second signal; tests replace it.
	exit    func(code int)
	signals int // SIGINT and SIGTERM received

	rescan    bool // --rescan-target
	rescanMu  sync.Mutex
	rescanned map[string]bool // jobs whose first run has had the rescan
}

// states is where job j's run keeps its targets' state; --rescan-target
// applies to the first run of each job in this process.
func (r *runner) states(j *config.Job) stateSettings {
	s := stateSettings{dir: r.cfg.StateDir}
	if !r.rescan {
		return s
	}
	r.rescanMu.Lock()
	defer r.rescanMu.Unlock()
	if r.rescanned == nil {
		r.rescanned = map[string]bool{}
	}
	s.rescan = !r.rescanned[j.Name]
	r.rescanned[j.Name] = true
	return s
}

// load reads the config and prints every problem of it, one per line.
func (r *runner) load() (*config.Config, error) {
	cfg, err := config.Load(r.path)
	if err != nil {
		return nil, configError(r.stderr, err)
	}
	return cfg, nil
}

// configError prints a config's problems, one per line, and makes them an
// exit status 2.
func configError(w io.Writer, err error) error {
	var es config.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			fmt.Fprintf(w, "ferry: %s\n", e)
		}
		return &exitError{code: exitUsage}
	}
	return &exitError{code: exitUsage, err: err}
}

func (r *runner) setup(cfg *config.Config) error {
	g := r.g
	g.logFormat = cfg.LogFormat
	if r.logFormat != "" {
		g.logFormat = r.logFormat
	}
	log, err := newLogger(&g, r.stderr)
	if err != nil {
		return err
	}
	r.log = log
	r.cfg = cfg
	return nil
}

// once runs every job one time, all at once, and prints the summary.
func (r *runner) once(ctx context.Context) error {
	cfg, err := r.load()
	if err != nil {
		return err
	}
	if err := r.setup(cfg); err != nil {
		return err
	}
	results := make([]jobResult, len(cfg.Jobs))
	var wg sync.WaitGroup
	for i, j := range cfg.Jobs {
		wg.Go(func() { results[i] = runJobOnce(ctx, j, r.log, r.metrics, r.states(j)) })
	}
	wg.Wait()
	if !r.g.quiet {
		printJobTable(r.stdout, cfg.Jobs, results)
	}
	if ctx.Err() != nil {
		return &exitError{code: exitFailed, err: fmt.Errorf("interrupted: %w; partial uploads are kept and resumed by the next run", ctx.Err())}
	}
	if code := exitOf(results); code != exitOK {
		return &exitError{code: code}
	}
	return nil
}

// printJobTable prints one line per job and target.
func printJobTable(w io.Writer, jobs []*config.Job, results []jobResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tTARGET\tCOPIED\tBYTES\tDELETED\tVERSIONED\tFAILED\tTIME\tSTATUS")
	for i, jr := range results {
		if jr.err != nil && jr.targets == nil {
			for _, t := range jobs[i].Targets {
				fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\terror: %s\n", jr.job, t.Name, oneLine(jr.err))
			}
			continue
		}
		for _, t := range jr.targets {
			rep := t.Report
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\t%s\n", jr.job, t.Name, rep.Uploaded,
				formatBytes(rep.UploadedBytes), rep.Deleted, t.Versioned, len(rep.Problems),
				rep.Duration.Round(time.Millisecond), targetStatus(t))
		}
	}
	tw.Flush()
}

// targetStatus is the STATUS column: ok, or what went wrong.
func targetStatus(t engine.TargetResult) string {
	switch targetExit(t) {
	case exitOK:
		return "ok"
	case exitUnreachable:
		return "unreachable: " + oneLine(t.Err)
	case exitUsage:
		return "config: " + oneLine(t.Err)
	}
	switch {
	case t.Err != nil:
		return "failed: " + oneLine(t.Err)
	case t.Report.DeletesRefused != nil:
		return "deletes refused: " + oneLine(t.Report.DeletesRefused)
	}
	return fmt.Sprintf("failed: %d %s", len(t.Report.Problems), plural(len(t.Report.Problems), "path", "paths"))
}

// jobKind says how a job runs.
func jobKind(j *config.Job) string {
	switch {
	case j.Watch:
		return "watch"
	case !j.Schedule.IsZero():
		return "schedule"
	}
	return "once"
}

// fingerprint identifies a job's settings, so a reload restarts only the
// jobs that changed. Line numbers are left out (a job moved in the file is
// the same job); secrets are in, hashed.
func fingerprint(j *config.Job) string {
	h := sha256.New()
	c := *j
	c.Line, c.Targets = 0, nil
	b, _ := json.Marshal(&c)
	h.Write(b)
	for _, t := range j.Targets {
		tc := *t
		tc.Line = 0
		b, _ := json.Marshal(&tc)
		h.Write(b)
		fmt.Fprintf(h, "\x00%s\x00%s\x00", t.Password.Reveal(), t.SecretAccessKey.Reveal())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// running is a started job of the daemon.
type running struct {
	job    *config.Job
	fp     string
	cancel context.CancelFunc
	done   chan struct{}
}

// daemon runs the jobs until stopped, reloading the config on SIGHUP.
// When the config has only run-once jobs it runs them and returns as
// --once does.
func (r *runner) daemon(ctx context.Context) error {
	cfg, err := r.load()
	if err != nil {
		return err
	}
	continuous := false
	for _, j := range cfg.Jobs {
		continuous = continuous || jobKind(j) != "once"
	}
	if err := r.setup(cfg); err != nil {
		return err
	}
	r.metrics = engine.NewMetrics()
	if !continuous {
		return r.once(ctx)
	}
	if cfg.MetricsAddr != "" {
		stop, err := r.serveMetrics(cfg.MetricsAddr)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		defer stop()
	}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	jobs := map[string]*running{}
	r.apply(ctx, jobs, cfg)
	r.log.Info("ferry running", "config", r.path, "jobs", len(jobs))
	for {
		select {
		case <-ctx.Done():
			r.stopAll(jobs, sigs)
			return nil
		case s := <-sigs:
			if s == syscall.SIGHUP {
				r.reload(ctx, jobs)
				continue
			}
			r.stopSignal(s)
			cancel()
		}
	}
}

// stopSignal counts SIGINT and SIGTERM: the first stops gracefully (the
// context main derives from it is cancelled as well), the second at once.
func (r *runner) stopSignal(s os.Signal) {
	r.signals++
	if r.signals >= 2 {
		r.log.Warn("second signal: stopping at once", "signal", s.String())
		r.exitNow(exitFailed)
		return
	}
	r.log.Info("stopping: waiting for transfers in flight (a second signal stops at once)", "signal", s.String())
}

func (r *runner) exitNow(code int) {
	if r.exit != nil {
		r.exit(code)
		return
	}
	os.Exit(code)
}

// stopAll cancels every job and waits for them to end; a second stop
// signal meanwhile ends the process.
func (r *runner) stopAll(jobs map[string]*running, sigs <-chan os.Signal) {
	done := make(chan struct{})
	go func() {
		for _, j := range jobs {
			j.cancel()
			<-j.done
		}
		close(done)
	}()
	for {
		select {
		case <-done:
			r.log.Info("stopped")
			return
		case s := <-sigs:
			if s != syscall.SIGHUP {
				r.stopSignal(s)
			}
		}
	}
}

// reload reads the config again and restarts what changed; a config with
// problems is reported and the running jobs stay as they are.
func (r *runner) reload(ctx context.Context, jobs map[string]*running) {
	cfg, err := config.Load(r.path)
	if err != nil {
		r.log.Error("reload failed: keeping the running jobs", "config", r.path, "err", oneLine(err))
		return
	}
	r.log.Info("reloading", "config", r.path)
	if cfg.MetricsAddr != r.cfg.MetricsAddr || cfg.LogFormat != r.cfg.LogFormat || cfg.StateDir != r.cfg.StateDir {
		r.log.Warn("metrics_addr, log_format and state_dir take effect at the next start, not on reload")
	}
	r.apply(ctx, jobs, cfg)
}

// apply makes jobs run cfg's jobs: removed and changed jobs are stopped,
// added and changed ones started, unchanged ones left running.
func (r *runner) apply(ctx context.Context, jobs map[string]*running, cfg *config.Config) {
	want := map[string]*config.Job{}
	for _, j := range cfg.Jobs {
		want[j.Name] = j
	}
	for name, run := range jobs {
		if j, ok := want[name]; ok && fingerprint(j) == run.fp {
			continue
		}
		run.cancel()
		<-run.done
		delete(jobs, name)
		r.metrics.Forget(name)
		r.log.Info("job stopped", "job", name)
	}
	for _, j := range cfg.Jobs {
		if _, ok := jobs[j.Name]; ok {
			continue
		}
		jctx, cancel := context.WithCancel(ctx)
		run := &running{job: j, fp: fingerprint(j), cancel: cancel, done: make(chan struct{})}
		jobs[j.Name] = run
		r.log.Info("job started", "job", j.Name, "kind", jobKind(j), "targets", len(j.Targets))
		go func() {
			defer close(run.done)
			r.runJob(jctx, j)
		}()
	}
}

// runJob runs one job until ctx ends: once, on its schedule, or watching.
func (r *runner) runJob(ctx context.Context, j *config.Job) {
	switch jobKind(j) {
	case "once":
		r.plan(j, "once", time.Time{})
		runJobOnce(ctx, j, r.log, r.metrics, r.states(j))
	case "watch":
		r.plan(j, "watch", time.Time{})
		if err := runWatchJob(ctx, j, r.log, r.metrics, r.states(j)); err != nil && ctx.Err() == nil {
			r.log.Error("watch job ended", "job", j.Name, "err", err)
		}
	case "schedule":
		r.schedule(ctx, j, time.Now)
	}
}

func (r *runner) plan(j *config.Job, kind string, next time.Time) {
	for _, t := range j.Targets {
		r.metrics.Plan(j.Name, t.Name, kind, next)
	}
}

// schedule runs a job at its times: an interval job at once and then every
// interval after the start of the previous run, a cron job at its times.
func (r *runner) schedule(ctx context.Context, j *config.Job, now func() time.Time) {
	next := j.Schedule.Next(now())
	if j.Schedule.Every > 0 {
		next = now()
	}
	for {
		r.plan(j, "schedule", next)
		if wait := time.Until(next); wait > 0 {
			r.log.Debug("next run", "job", j.Name, "at", next)
			if sleep(ctx, wait) != nil {
				return
			}
		}
		start := now()
		runJobOnce(ctx, j, r.log, r.metrics, r.states(j))
		if ctx.Err() != nil {
			return
		}
		next = j.Schedule.Next(start)
		if n := now(); next.Before(n) {
			next = j.Schedule.Next(n)
			if j.Schedule.Every > 0 {
				next = n // an interval run that took longer starts again at once
			}
		}
	}
}

// serveMetrics serves /metrics and /status on addr until stop is called.
func (r *runner) serveMetrics(addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: r.metrics.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	r.log.Info("serving metrics", "addr", ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
