package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/local"
	"github.com/ferrysync/ferry/backends/s3"
	"github.com/ferrysync/ferry/backends/sftp"
	"github.com/ferrysync/ferry/cmd/ferry/config"
	"github.com/ferrysync/ferry/engine"
)

// errNotBuilt marks a config setting that is valid but that this build of
// ferry cannot act on yet; a job using it fails as a config error (exit 2).
var errNotBuilt = errors.New("not supported by this build")

// configTargetOpener opens one configured target; tests replace it.
var configTargetOpener = openConfigTarget

// openConfigTarget opens one target of a job as the config describes it;
// onReconnect, when not nil, is called each time an SFTP target replaces a
// connection that died (it must not block). A local target's directory is
// created when missing. An unreachable or
// refusing SFTP server keeps its class (backends.ErrUnreachable,
// backends.ErrAuth, which an unreadable password_file or passphrase_file
// also is); settings this build cannot use wrap errNotBuilt. The caller
// closes the backend.
func openConfigTarget(ctx context.Context, t *config.Target, log *slog.Logger, onReconnect func()) (backends.Backend, error) {
	switch t.Type {
	case config.Local:
		if err := os.MkdirAll(t.Path, 0o755); err != nil {
			return nil, fmt.Errorf("target %s: %w", t.Name, err)
		}
		return local.New(t.Path, local.Options{NoFsync: !t.Fsync, Logger: log})
	case config.SFTP:
		c := sftpConfig(t, log)
		c.OnReconnect = onReconnect
		if err := readSFTPSecrets(t, &c); err != nil {
			return nil, err
		}
		return sftp.Dial(ctx, c)
	case config.S3:
		return s3.New(ctx, s3Config(t, log))
	}
	return nil, fmt.Errorf("target %s: type %s: %w", t.Name, t.Type, errNotBuilt)
}

// sftpConfig maps a configured SFTP target onto the backend's Config; the
// secrets kept in files are read by readSFTPSecrets.
func sftpConfig(t *config.Target, log *slog.Logger) sftp.Config {
	c := sftp.Config{
		Host:               t.Host,
		Port:               t.Port,
		User:               t.User,
		Password:           t.Password.Reveal(),
		Root:               t.Path,
		KnownHostsFile:     t.KnownHosts,
		AcceptNewHostKey:   t.AcceptNewHostKey,
		KeepaliveInterval:  t.Keepalive,
		KeepaliveMaxMissed: t.KeepaliveMaxMissed,
		ChunkSize:          int(t.ChunkSize),
		RequestsInFlight:   t.RequestsInFlight,
		Connections:        t.Connections,
		Verify:             sftp.Verify(t.Verify),
		Logger:             log,
	}
	if c.Root == "." {
		c.Root = ""
	}
	if t.Identity != "" {
		c.IdentityFiles = []string{t.Identity}
	}
	return c
}

// readSFTPSecrets fills c's Password and Passphrase from the target's
// password_file and passphrase_file, read at each open so a rotated secret
// is picked up by the next run. An unreadable or empty file is refused as
// backends.ErrAuth, like an unreadable identity file; the errors name the
// file, never its content.
func readSFTPSecrets(t *config.Target, c *sftp.Config) error {
	for _, f := range []struct {
		key, path string
		dst       *string
	}{
		{"password_file", t.PasswordFile, &c.Password},
		{"passphrase_file", t.PassphraseFile, &c.Passphrase},
	} {
		if f.path == "" {
			continue
		}
		v, err := readSecretFile(f.path)
		if err != nil {
			return fmt.Errorf("target %s: %s: %w: %w", t.Name, f.key, backends.ErrAuth, err)
		}
		*f.dst = v
	}
	return nil
}

// readSecretFile returns a file's content less one trailing line end, the
// one an editor or `echo` leaves.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		// An *fs.PathError names the path and the cause, not the content.
		return "", err
	}
	s := string(b)
	if line, ok := strings.CutSuffix(s, "\n"); ok {
		s = strings.TrimSuffix(line, "\r")
	}
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// s3Config maps a configured S3 target onto the backend's Config. Keys left
// empty are taken by the backend from the AWS environment and files.
func s3Config(t *config.Target, log *slog.Logger) s3.Config {
	return s3.Config{
		Bucket:          t.Bucket,
		Prefix:          t.Path,
		Endpoint:        t.Endpoint,
		Region:          t.Region,
		AccessKeyID:     t.AccessKeyID,
		SecretAccessKey: t.SecretAccessKey.Reveal(),
		Insecure:        t.Insecure,
		Logger:          log,
	}
}

// targetLogger is the logger of one job's target: job= and target= on every
// line.
func targetLogger(base *slog.Logger, job, target string) *slog.Logger {
	return base.With("job", job, "target", target)
}

// reconnects returns the hook that counts a target's reconnects in m, or
// nil without metrics.
func reconnects(m *engine.Metrics, job, target string) func() {
	if m == nil {
		return nil
	}
	return func() { m.Reconnected(job, target) }
}

// engineMode maps the config's mode.
func engineMode(m config.Mode) engine.Mode {
	if m == config.Backup {
		return engine.Backup
	}
	return engine.Mirror
}

// execOptions maps a target's transfer settings. The config counts
// attempts per file, the engine retries after the first attempt.
func execOptions(t *config.Target) engine.ExecOptions {
	o := engine.ExecOptions{Transfers: t.Transfers, BWLimit: t.BWLimit, Retries: t.Retries - 1}
	if o.Retries == 0 {
		o.Retries = -1 // the engine reads 0 as its default
	}
	return o
}

// modifyWindow is how far mtimes may differ on a target and count as
// equal: SFTP keeps whole seconds.
func modifyWindow(t *config.Target) time.Duration {
	if t.Type == config.SFTP {
		return time.Second
	}
	return 0
}

// fanOut builds one run of a job over all its targets. now, if not nil,
// replaces the clock of backup versions (tests).
func fanOut(j *config.Job, base *slog.Logger, m *engine.Metrics, now func() time.Time) engine.FanOutOptions {
	o := engine.FanOutOptions{
		Source:    j.Source,
		Mode:      engineMode(j.Mode),
		Excludes:  j.Exclude,
		Checksum:  j.Checksum,
		MaxDelete: j.MaxDelete,
		Logger:    base.With("job", j.Name),
	}
	if j.Mode == config.Backup {
		o.Versions = &engine.Versions{Dir: j.BackupDir, Keep: engine.Keep{Count: j.Keep.Count, Age: j.Keep.Age}, Now: now}
	}
	for _, t := range j.Targets {
		log := targetLogger(base, j.Name, t.Name)
		onReconnect := reconnects(m, j.Name, t.Name)
		exec := execOptions(t)
		exec.Logger = log
		if m != nil {
			exec.Progress = m.Progress(j.Name, t.Name)
			name := t.Name
			exec.Sleep = func(ctx context.Context, d time.Duration) error {
				m.Retried(j.Name, name)
				return sleep(ctx, d)
			}
		}
		o.Targets = append(o.Targets, engine.FanOutTarget{
			Name: t.Name,
			Open: func(ctx context.Context) (backends.Backend, error) {
				return configTargetOpener(ctx, t, log, onReconnect)
			},
			Exec:         exec,
			ModifyWindow: modifyWindow(t),
			Logger:       log,
		})
	}
	return o
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// jobResult is one run of one job.
type jobResult struct {
	job     string
	err     error // the whole job failed before any target (source, scan)
	targets []engine.TargetResult
}

// runJobOnce runs one job over all its targets and records it in m.
func runJobOnce(ctx context.Context, j *config.Job, base *slog.Logger, m *engine.Metrics, s stateSettings) jobResult {
	if m != nil {
		for _, t := range j.Targets {
			m.Started(j.Name, t.Name)
		}
	}
	o := fanOut(j, base, m, nil)
	for i, t := range j.Targets {
		ss, st, err := openTargetState(s, j, t, o.Targets[i].Logger)
		switch {
		case err != nil:
			o.Targets[i].Open = func(context.Context) (backends.Backend, error) { return nil, err }
		case st != nil:
			defer st.Close()
			o.Targets[i].State = ss
		}
	}
	res, err := engine.SyncTargets(ctx, o)
	for i, r := range res {
		if ss := o.Targets[i].State; ss != nil && r.Err == nil {
			logStateStats(o.Targets[i].Logger, ss.Stats)
		}
	}
	if err != nil && ctx.Err() == nil {
		base.Error("job failed", "job", j.Name, "err", err)
	}
	if m != nil {
		now := time.Now()
		for _, r := range res {
			m.Finished(j.Name, r.Name, r, targetExit(r) == exitUnreachable, now)
		}
		if err != nil && res == nil {
			for _, t := range j.Targets {
				m.Finished(j.Name, t.Name, engine.TargetResult{Name: t.Name, Err: err}, false, now)
			}
		}
	}
	return jobResult{job: j.Name, err: err, targets: res}
}

// targetExit is the exit status one target's run calls for.
func targetExit(r engine.TargetResult) int {
	switch {
	case r.Err == nil && !r.Report.Failed():
		return exitOK
	case errors.Is(r.Err, errNotBuilt):
		return exitUsage
	case errors.Is(r.Err, backends.ErrUnreachable), errors.Is(r.Err, backends.ErrAuth):
		return exitUnreachable
	}
	return exitFailed
}

// worstExit folds exit statuses: a config error (2) over an unreachable
// target (3) over failed files (1) over success.
func worstExit(a, b int) int {
	rank := map[int]int{exitOK: 0, exitFailed: 1, exitUnreachable: 2, exitUsage: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// exitOf is the exit status of a set of job runs.
func exitOf(results []jobResult) int {
	code := exitOK
	for _, jr := range results {
		if jr.err != nil {
			// A source that vanished after the config was checked: the
			// run failed and changed nothing.
			code = worstExit(code, exitFailed)
		}
		for _, r := range jr.targets {
			code = worstExit(code, targetExit(r))
		}
	}
	return code
}
