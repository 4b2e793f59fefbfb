package bench

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/sshd"
)

// Watch mode, issue 4. Two workloads against one loopback sshd:
//
//   - latency: a 4 KiB file is written and closed in the watched source,
//     one every latencyGap; a poller stats the target (the server's root is
//     on this machine) every millisecond and records when the file shows
//     under its final name with its full size. ferry watch and lsyncd
//     (Debian package, default.rsyncssh with its defaults, so its 15 s
//     delay) are measured the same way, side by side;
//   - burst: a populated folder of 10,000 x 4 KiB files in 100 folders is
//     moved into the watched source; the time until all 10,000 are on the
//     target, against `rsync -a -e ssh` of the same tree into an empty
//     folder.
//
// Knobs: BENCH_WATCH_CHANGES (default 200) changes for the latency run.

const latencyGap = 100 * time.Millisecond

// watcherTool starts a watcher of src that mirrors to the server folder
// dst, and returns once its first sync is done; stop ends it.
type watcherTool struct {
	name  string
	start func(b *testing.B, src, dst string) (stop func())
}

func ferryWatchTool(srv *sshd.Server) watcherTool {
	return watcherTool{name: "ferry watch", start: func(b *testing.B, src, dst string) func() {
		bin, err := ferry(b)
		if err != nil {
			b.Skipf("ferry not built: %v", err)
		}
		if out, err := exec.Command(bin, "watch", "--help").CombinedOutput(); err != nil {
			b.Skipf("ferry has no watch command: %v: %s", err, tail(string(out), 200))
		}
		args := []string{"watch", "--identity", srv.ClientKeyPath(), "--known-hosts", srv.KnownHostsPath(),
			"--ssh-config", "none", "--status-interval", "1h", src, srv.URL(dst)}
		return watchDaemon(b, bin, args, nil)
	}}
}

func lsyncdTool(srv *sshd.Server) watcherTool {
	return watcherTool{name: "lsyncd (rsyncssh)", start: func(b *testing.B, src, dst string) func() {
		if _, err := exec.LookPath("lsyncd"); err != nil {
			b.Skip("lsyncd not installed")
		}
		dir := b.TempDir()
		opts := []string{}
		for _, kv := range [][2]string{
			{"IdentitiesOnly", "yes"}, {"UserKnownHostsFile", srv.KnownHostsPath()},
			{"StrictHostKeyChecking", "yes"}, {"BatchMode", "yes"}, {"Ciphers", cipher},
		} {
			opts = append(opts, fmt.Sprintf("%s = %q", kv[0], kv[1]))
		}
		cfg := fmt.Sprintf(`settings { logfile = %q, statusFile = %q, nodaemon = true }
sync {
	default.rsyncssh,
	source = %q,
	host = %q,
	targetdir = %q,
	ssh = { identityFile = %q, port = %d, options = { %s } },
}
`, filepath.Join(dir, "log"), filepath.Join(dir, "status"), src, srv.User()+"@127.0.0.1", dst,
			srv.ClientKeyPath(), srv.Port(), strings.Join(opts, ", "))
		path := filepath.Join(dir, "lsyncd.conf.lua")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			b.Fatal(err)
		}
		return watchDaemon(b, "lsyncd", []string{path}, func() string {
			l, _ := os.ReadFile(filepath.Join(dir, "log"))
			return string(l)
		})
	}}
}

// watchDaemon runs a watcher process; stop sends SIGTERM and waits.
func watchDaemon(b *testing.B, bin string, args []string, extraLog func() string) func() {
	var out bytes.Buffer
	var mu sync.Mutex
	cmd := exec.Command(bin, args...)
	w := watchWriter(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if b.Failed() {
			mu.Lock()
			b.Logf("%s output:\n%s", bin, tail(out.String(), 3000))
			mu.Unlock()
			if extraLog != nil {
				b.Logf("log:\n%s", tail(extraLog(), 3000))
			}
		}
	}
}

type watchWriter func([]byte) (int, error)

func (f watchWriter) Write(p []byte) (int, error) { return f(p) }

// watchWaitPath polls until path exists with size bytes, and returns when it
// was first seen.
func watchWaitPath(ctx context.Context, path string, size int64) (time.Time, error) {
	for {
		if fi, err := os.Stat(path); err == nil && fi.Size() == size {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("%s never appeared: %w", path, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// measureLatency makes n changes in src, one every latencyGap, and returns
// each one's latency to dst.
func measureLatency(b *testing.B, src, dst string, n int, timeout time.Duration) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	data := make([]byte, 4<<10)
	lat := make([]time.Duration, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		name := fmt.Sprintf("lat-%04d.bin", i)
		copy(data, fmt.Sprintf("change %d %v", i, time.Now()))
		f, err := os.Create(filepath.Join(src, name))
		if err != nil {
			return nil, err
		}
		if _, err := f.Write(data); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
		closed := time.Now()
		wg.Go(func() {
			seen, err := watchWaitPath(ctx, filepath.Join(dst, name), int64(len(data)))
			if err != nil {
				errs <- err
				return
			}
			lat[i] = seen.Sub(closed)
		})
		time.Sleep(latencyGap)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return lat, err
	}
	return lat, nil
}

func watchPercentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// BenchmarkWatchLatency measures close-to-visible latency of single 4 KiB
// files on an SFTP target for ferry watch and lsyncd.
func BenchmarkWatchLatency(b *testing.B) {
	srv := startSSHD(b)
	n := envInt("BENCH_WATCH_CHANGES", 200)
	type row struct {
		name          string
		p50, p99, max time.Duration
		err           error
	}
	var rows []row
	for _, tl := range []watcherTool{ferryWatchTool(srv), lsyncdTool(srv)} {
		tag := strings.Fields(tl.name)[0]
		src := filepath.Join(work(b), "watch-lat-src-"+tag)
		dst := filepath.Join(srv.Root(), "watch-lat-"+tag)
		if err := os.MkdirAll(src, 0o755); err != nil {
			b.Fatal(err)
		}
		os.WriteFile(filepath.Join(src, "ready"), []byte("ready"), 0o644)
		stop := tl.start(b, src, dst)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := watchWaitPath(ctx, filepath.Join(dst, "ready"), 5)
		cancel()
		if err != nil {
			stop()
			rows = append(rows, row{name: tl.name, err: fmt.Errorf("first sync: %w", err)})
			continue
		}
		timeout := time.Duration(n)*latencyGap + 2*time.Minute
		lat, err := measureLatency(b, src, dst, n, timeout)
		stop()
		if err != nil {
			rows = append(rows, row{name: tl.name, err: err})
			continue
		}
		rows = append(rows, row{name: tl.name, p50: watchPercentile(lat, 0.5), p99: watchPercentile(lat, 0.99), max: watchPercentile(lat, 1)})
		if tag == "ferry" {
			b.ReportMetric(float64(watchPercentile(lat, 0.5).Milliseconds()), "p50-ms")
			b.ReportMetric(float64(watchPercentile(lat, 0.99).Milliseconds()), "p99-ms")
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\nWatch latency: 4 KiB file closed -> visible under its final name on the SFTP target (%d changes, one per %v, loopback sshd)\n", n, latencyGap)
	fmt.Fprintf(&out, "%-20s %10s %10s %10s   target (issue 4): p50 <= 200ms, p99 <= 1s\n", "tool", "p50", "p99", "max")
	for _, r := range rows {
		if r.err != nil {
			fmt.Fprintf(&out, "%-20s not measured: %v\n", r.name, r.err)
			continue
		}
		fmt.Fprintf(&out, "%-20s %10v %10v %10v\n", r.name, r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.max.Round(time.Millisecond))
	}
	fmt.Print(out.String())
	b.Log(out.String())
}

// watchCountFiles counts the regular files under root.
func watchCountFiles(root string) int {
	n := 0
	filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && !strings.Contains(d.Name(), ".ferry-") && !strings.HasPrefix(d.Name(), ".") {
			n++
		}
		return nil
	})
	return n
}

// BenchmarkWatchBurst measures how long 10,000 new files moved into the
// watched source take to land on the SFTP target, against rsync over ssh.
func BenchmarkWatchBurst(b *testing.B) {
	srv := startSSHD(b)
	tree := smallTree(b)
	want := SmallFiles.Dirs * SmallFiles.FilesPerDir

	// ferry watch: the tree is copied beside the source first, then moved
	// in at once.
	src := filepath.Join(work(b), "watch-burst-src")
	stage := filepath.Join(work(b), "watch-burst-stage")
	dst := filepath.Join(srv.Root(), "watch-burst-ferry")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "ready"), []byte("ready"), 0o644)
	if out, err := exec.Command("cp", "-a", tree, stage).CombinedOutput(); err != nil {
		b.Fatalf("cp: %v: %s", err, out)
	}
	var ferryTook time.Duration
	var ferryErr error
	stop := ferryWatchTool(srv).start(b, src, dst)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	_, ferryErr = watchWaitPath(ctx, filepath.Join(dst, "ready"), 5)
	cancel()
	if ferryErr == nil {
		start := time.Now()
		if err := os.Rename(stage, filepath.Join(src, "burst")); err != nil {
			b.Fatal(err)
		}
		deadline := start.Add(10 * time.Minute)
		for watchCountFiles(filepath.Join(dst, "burst")) < want {
			if time.Now().After(deadline) {
				ferryErr = fmt.Errorf("only %d of %d files after 10m", watchCountFiles(filepath.Join(dst, "burst")), want)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		ferryTook = time.Since(start)
	}
	stop()

	rdst := filepath.Join(srv.Root(), "watch-burst-rsync")
	ssh := append([]string{"ssh", "-p", fmt.Sprint(srv.Port())}, sshOpts(srv)...)
	start := time.Now()
	out, err := exec.Command("rsync", "-a", "-e", strings.Join(quoteAll(ssh), " "), tree+"/", srv.User()+"@127.0.0.1:"+rdst+"/").CombinedOutput()
	rsyncTook := time.Since(start)
	var rsyncErr error
	if err != nil {
		rsyncErr = fmt.Errorf("%v: %s", err, tail(string(out), 300))
	} else if n := watchCountFiles(rdst); n != want {
		rsyncErr = fmt.Errorf("rsync left %d of %d files", n, want)
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "\nWatch burst: %d new 4 KiB files in %d folders until all are on the SFTP target (loopback sshd)\n", want, SmallFiles.Dirs)
	line := func(name string, d time.Duration, err error) {
		if err != nil {
			fmt.Fprintf(&sb, "%-34s not measured: %v\n", name, err)
			return
		}
		fmt.Fprintf(&sb, "%-34s %10v\n", name, d.Round(time.Millisecond))
	}
	line("ferry watch (folder moved in)", ferryTook, ferryErr)
	line("rsync -a -e ssh (one-shot)", rsyncTook, rsyncErr)
	if ferryErr == nil && rsyncErr == nil {
		fmt.Fprintf(&sb, "ratio ferry/rsync: %.2f\n", ferryTook.Seconds()/rsyncTook.Seconds())
		b.ReportMetric(ferryTook.Seconds(), "ferry-s")
		b.ReportMetric(rsyncTook.Seconds(), "rsync-s")
	}
	fmt.Print(sb.String())
	b.Log(sb.String())
}

// procCPU returns the user+system CPU time a live process has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// BenchmarkWatchIdle measures what a watcher of 100,000 files costs while
// nothing changes: CPU over BENCH_WATCH_IDLE (default 30s) and memory, for
// ferry watch mirroring to a local folder.
func BenchmarkWatchIdle(b *testing.B) {
	bin, err := ferry(b)
	if err != nil {
		b.Skipf("ferry not built: %v", err)
	}
	src := filepath.Join(work(b), "watch-idle-src")
	dst := filepath.Join(work(b), "watch-idle-dst")
	spec := TreeSpec{Dirs: 1000, FilesPerDir: 100, FileSize: 64, Seed: 7}
	n, err := GenTree(src, spec)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "watch", "--fsync=false", "--status-interval", "1h", src, dst)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	start := time.Now()
	for watchCountFiles(dst) < n {
		if time.Since(start) > 15*time.Minute {
			b.Fatalf("first sync of %d files not done after 15m: %s", n, tail(out.String(), 1000))
		}
		time.Sleep(time.Second)
	}
	synced := time.Since(start)
	time.Sleep(3 * time.Second) // let the first sync's tail finish
	idle := time.Duration(envInt("BENCH_WATCH_IDLE", 30)) * time.Second
	c0, err := procCPU(cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(idle)
	c1, _ := procCPU(cmd.Process.Pid)
	rss := rssKiB(cmd.Process.Pid)
	pct := 100 * (c1 - c0).Seconds() / idle.Seconds()
	msg := fmt.Sprintf("\nWatch idle: %d files in %d folders, local target\nfirst sync %v; idle CPU %.2f%% of a core over %v (target < 1%%); RSS %.1f MiB\n",
		n, spec.Dirs, synced.Round(time.Second), pct, idle, float64(rss)/1024)
	fmt.Print(msg)
	b.Log(msg)
	b.ReportMetric(pct, "idle-cpu-%")
	b.ReportMetric(float64(rss)/1024, "rss-MiB")
}
