package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/sftp"
	"github.com/ferrysync/ferry/cmd/ferry/config"
	"github.com/ferrysync/ferry/engine"
)

func loadJobs(t *testing.T, text string) *config.Config {
	t.Helper()
	dir := t.TempDir()
	jobSite(t, dir)
	c, err := config.Parse(filepath.Join(dir, "ferry.yaml"), []byte(text), func(k string) (string, bool) {
		if k == "HOME" {
			return dir, true
		}
		return "", false
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConfigTargetsMapOntoTheEngine(t *testing.T) {
	c := loadJobs(t, `
defaults: {retries: 3, transfers: 2, bwlimit: 1M}
jobs:
  - name: j
    source: ./src
    mode: backup
    backup_dir: .old
    keep: 7d
    max_delete: 5
    exclude: ["*.tmp"]
    targets:
      - {name: s, type: sftp, host: h, port: 2222, user: u, path: ., keepalive: 2s, chunk_size: 64K, connections: 2, verify: hash, accept_new_host_key: true}
      - {name: l, type: local, path: ./out, retries: 1}
`)
	j := c.Jobs[0]
	sc := sftpConfig(j.Targets[0], nil)
	want := sftp.Config{Host: "h", Port: 2222, User: "u", Root: "", AcceptNewHostKey: true, KeepaliveInterval: 2 * time.Second,
		KeepaliveMaxMissed: config.DefaultKeepaliveMaxMissed, ChunkSize: 64 << 10, RequestsInFlight: config.DefaultRequestsInFlight,
		Connections: 2, Verify: sftp.VerifyHash, KnownHostsFile: sc.KnownHostsFile}
	if fmt.Sprintf("%+v", sc) != fmt.Sprintf("%+v", want) {
		t.Errorf("sftp config\n got %+v\nwant %+v", sc, want)
	}
	tests := []struct {
		name      string
		target    *config.Target
		retries   int
		transfers int
		window    time.Duration
	}{
		{"three attempts are two retries", j.Targets[0], 2, 2, time.Second},
		{"one attempt is no retry", j.Targets[1], -1, 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := execOptions(tc.target)
			if o.Retries != tc.retries || o.Transfers != tc.transfers || o.BWLimit != 1<<20 {
				t.Errorf("exec options %+v", o)
			}
			if w := modifyWindow(tc.target); w != tc.window {
				t.Errorf("modify window %v, want %v", w, tc.window)
			}
		})
	}
	fo := fanOut(j, slog.New(slog.DiscardHandler), nil, nil)
	if fo.Mode != engine.Backup || fo.MaxDelete != 5 || fo.Versions == nil || fo.Versions.Dir != ".old" ||
		fo.Versions.Keep != (engine.Keep{Age: 7 * 24 * time.Hour}) || len(fo.Targets) != 2 || fo.Excludes[0] != "*.tmp" {
		t.Errorf("fan-out options %+v", fo)
	}
}

func TestTargetExitCodes(t *testing.T) {
	tests := []struct {
		name string
		res  engine.TargetResult
		want int
	}{
		{"clean run", engine.TargetResult{}, exitOK},
		{"a failed path", engine.TargetResult{Report: engine.Report{Problems: []engine.Problem{{Path: "x", Err: errors.New("no")}}}}, exitFailed},
		{"deletes refused", engine.TargetResult{Report: engine.Report{DeletesRefused: engine.ErrTooManyDeletes}}, exitFailed},
		{"unreachable", engine.TargetResult{Err: fmt.Errorf("dial: %w", backends.ErrUnreachable)}, exitUnreachable},
		{"auth refused", engine.TargetResult{Err: fmt.Errorf("key: %w", backends.ErrAuth)}, exitUnreachable},
		{"setting not built", engine.TargetResult{Err: fmt.Errorf("s3: %w", errNotBuilt)}, exitUsage},
		{"other whole-run error", engine.TargetResult{Err: errors.New("disk on fire")}, exitFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := targetExit(tc.res); got != tc.want {
				t.Errorf("exit %d, want %d", got, tc.want)
			}
		})
	}
	order := []int{exitOK, exitFailed, exitUnreachable, exitUsage}
	for i, a := range order {
		for j, b := range order {
			if got, want := worstExit(a, b), order[max(i, j)]; got != want {
				t.Errorf("worstExit(%d, %d) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func TestSecretsStayOutOfOutput(t *testing.T) {
	dir := t.TempDir()
	src := jobSite(t, dir)
	const pw = "hunter2-very-secret"
	cfg := writeConfig(t, dir, fmt.Sprintf("log_format: json\njobs:\n  - name: j\n    source: %q\n    targets:\n"+
		"      - {name: s, type: sftp, host: 127.0.0.1, port: 1, user: u, path: x, password: %q, accept_new_host_key: true}\n", src, pw))
	code, stdout, stderr := runFerry(t, "-v", "run", "--once", "-c", cfg)
	// Nothing listens on port 1: the password login is tried, and fails as
	// an unreachable target.
	if code != exitUnreachable {
		t.Errorf("exit %d, want %d (unreachable)\n%s%s", code, exitUnreachable, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, pw) {
		t.Errorf("the password is in the output:\n%s%s", stdout, stderr)
	}
	if !strings.Contains(stdout, "unreachable: ") {
		t.Errorf("want an unreachable status:\n%s", stdout)
	}
}

func TestSecondSignalStopsAtOnce(t *testing.T) {
	var exited []int
	r := &runner{log: slog.New(slog.DiscardHandler), exit: func(c int) { exited = append(exited, c) }}
	r.stopSignal(testSignal{})
	if len(exited) != 0 {
		t.Fatalf("the first signal exited")
	}
	r.stopSignal(testSignal{})
	if len(exited) != 1 || exited[0] != exitFailed {
		t.Errorf("second signal: exits %v, want [1]", exited)
	}
}

type testSignal struct{}

func (testSignal) String() string { return "test" }
func (testSignal) Signal()        {}

func TestLazyBackendOpensWhenTheTargetAnswers(t *testing.T) {
	dir := t.TempDir()
	up := false
	opens := 0
	lb := &lazyBackend{name: "t", open: func(ctx context.Context) (backends.Backend, error) {
		opens++
		if !up {
			return nil, fmt.Errorf("refused: %w", backends.ErrUnreachable)
		}
		return openConfigTarget(ctx, &config.Target{Name: "t", Type: config.Local, Path: dir}, nil, nil)
	}}
	defer lb.Close()
	if _, err := lb.List(context.Background(), ""); !errors.Is(err, backends.ErrUnreachable) {
		t.Fatalf("down: %v", err)
	}
	if lb.Unwrap() != nil {
		t.Errorf("unwrap before open")
	}
	up = true
	if _, err := lb.List(context.Background(), ""); err != nil {
		t.Fatalf("up: %v", err)
	}
	if _, ok := backends.As[backends.Symlinker](lb); !ok {
		t.Errorf("the local target's symlinks are not found through the wrapper")
	}
	lb.Mkdir(context.Background(), "d")
	if opens != 2 {
		t.Errorf("%d opens, want 2 (one failed, one kept)", opens)
	}
}

// TestReconnectsCountedPerTarget: the hook each job hands its targets'
// opener counts into ferry_reconnects_total under the job's and the
// target's names, for one-shot and watch jobs. The fake opener stands in
// for an SFTP target that replaced a dead connection twice and once.
func TestReconnectsCountedPerTarget(t *testing.T) {
	old := configTargetOpener
	t.Cleanup(func() { configTargetOpener = old })
	configTargetOpener = func(ctx context.Context, ct *config.Target, log *slog.Logger, onReconnect func()) (backends.Backend, error) {
		if onReconnect == nil {
			return nil, fmt.Errorf("target %s opened without a reconnect hook", ct.Name)
		}
		for range map[string]int{"a": 2, "b": 1}[ct.Name] {
			onReconnect()
		}
		return old(ctx, ct, log, onReconnect)
	}
	for _, kind := range []string{"once", "watch"} {
		t.Run(kind, func(t *testing.T) {
			c := loadJobs(t, fmt.Sprintf(`
jobs:
  - name: site
    source: ./src
    watch: %v
    state: false
    targets:
      - {name: a, type: local, path: ./a, fsync: false}
      - {name: b, type: local, path: ./b, fsync: false}
`, kind == "watch"))
			m := engine.NewMetrics()
			log := slog.New(slog.DiscardHandler)
			want := []string{`ferry_reconnects_total{job="site",target="a"} 2`, `ferry_reconnects_total{job="site",target="b"} 1`}
			counted := func() string {
				rec := httptest.NewRecorder()
				m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
				for _, w := range want {
					if !strings.Contains(rec.Body.String(), w) {
						return w
					}
				}
				return ""
			}
			if kind == "once" {
				r := runJobOnce(t.Context(), c.Jobs[0], log, m, stateSettings{})
				if r.err != nil {
					t.Fatal(r.err)
				}
				for _, tr := range r.targets {
					if tr.Err != nil {
						t.Fatalf("target %s: %v", tr.Name, tr.Err)
					}
				}
			} else {
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan error, 1)
				go func() { done <- runWatchJob(ctx, c.Jobs[0], log, m, stateSettings{}) }()
				waitFor(t, "both targets opened", 10*time.Second, func() bool { return counted() == "" })
				cancel()
				<-done
			}
			if w := counted(); w != "" {
				t.Errorf("metrics lack %s", w)
			}
		})
	}
}
