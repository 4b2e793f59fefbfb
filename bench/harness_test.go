package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Knobs, all optional:
//
//	BENCH_REPS     runs per tool per scenario (default 3; the median is reported)
//	BENCH_DIR      where the data lives (default the system temp dir)
//	BENCH_BIG_MIB  size of the large file in MiB (default 1024)
//	BENCH_TIMEOUT  limit for one command (default 10m)
//	BENCH_SRC      module tree to build ferry from (default this module;
//	               run.sh sets it to a snapshot of HEAD with BENCH_FROM_HEAD=1)
func reps() int      { return envInt("BENCH_REPS", 3) }
func bigSize() int64 { return int64(envInt("BENCH_BIG_MIB", GiB>>20)) << 20 }
func cmdTimeout() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("BENCH_TIMEOUT")); err == nil {
		return d
	}
	return 10 * time.Minute
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

var (
	workOnce sync.Once
	workDir  string
	workErr  error

	ferryOnce sync.Once
	ferryBin  string
	ferryErr  error

	sftpOnce sync.Once
	sftpBin  string
	sftpNote string
	sftpErr  error

	smallOnce sync.Once
	smallSrc  string
	smallErr  error

	bigOnce sync.Once
	bigSrc  string
	bigErr  error

	reportMu  sync.Mutex
	scenarios []*Scenario
)

// work returns the per-process data folder, made on first use and removed
// by cleanupWork at exit.
func work(tb testing.TB) string {
	workOnce.Do(func() {
		workDir, workErr = os.MkdirTemp(os.Getenv("BENCH_DIR"), "ferry-bench-")
		if workErr == nil {
			workErr = os.WriteFile(filepath.Join(workDir, "rclone.conf"), nil, 0o600)
		}
	})
	if workErr != nil {
		tb.Fatalf("bench work dir: %v", workErr)
	}
	return workDir
}

func cleanupWork() {
	if workDir != "" {
		os.RemoveAll(workDir)
	}
}

// ferry returns the built binary, or "" and the reason it could not be
// built; callers then report ferry as not measured and still run the peers.
func ferry(tb testing.TB) (string, error) {
	ferryOnce.Do(func() {
		root, err := buildRoot()
		if err != nil {
			ferryErr = err
			return
		}
		ferryBin, ferryErr = BuildFerry(root, work(tb))
		if ferryErr == nil {
			// A binary that builds but has no sync command yet is as
			// good as missing.
			if out, err := exec.Command(ferryBin, "sync", "--help").CombinedOutput(); err != nil {
				ferryErr = fmt.Errorf("ferry sync --help: %v: %s", err, tail(string(out), 300))
			}
		}
	})
	return ferryBin, ferryErr
}

// buildRoot is the module tree ferry is built from.
func buildRoot() (string, error) {
	if r := os.Getenv("BENCH_SRC"); r != "" {
		return r, nil
	}
	return ModuleRoot()
}

// quietMax bounds the wait for a quiet machine before each run.
const quietMax = 5 * time.Second

// ferrySFTPBin returns the binary that runs `sync --identity KEY
// --known-hosts FILE SRC sftp://...`: the ferry CLI once it has an SFTP
// target, until then the bench stand-in that wires the same engine and
// backend (note says which, for the report).
func ferrySFTPBin(tb testing.TB) (bin, note string, err error) {
	sftpOnce.Do(func() {
		bin, err := ferry(tb)
		if err == nil {
			out, _ := exec.Command(bin, "sync", "--help").CombinedOutput()
			if strings.Contains(string(out), "--identity") {
				sftpBin = bin
				return
			}
		}
		root, err := buildRoot()
		if err != nil {
			sftpErr = err
			return
		}
		out := filepath.Join(work(tb), "ferrysftp")
		cmd := exec.Command("go", "build", "-o", out, "./bench/internal/ferrysftp")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			sftpErr = fmt.Errorf("ferry CLI has no SFTP target and the stand-in does not build: %v: %s", err, tail(string(b), 400))
			return
		}
		sftpBin = out
		sftpNote = "ferry here is bench/internal/ferrysftp (engine.Sync + backends/sftp with defaults): the CLI had no SFTP target yet"
	})
	return sftpBin, sftpNote, sftpErr
}

// sftpArgs are the arguments for the binary ferrySFTPBin returned.
func sftpArgs(bin string, args ...string) []string {
	if filepath.Base(bin) == "ferrysftp" {
		return args
	}
	return append([]string{"sync", "-q"}, args...)
}

// smallTree returns a source folder of SmallFiles, generated once.
func smallTree(tb testing.TB) string {
	smallOnce.Do(func() {
		smallSrc = filepath.Join(work(tb), "src-small")
		_, smallErr = GenTree(smallSrc, SmallFiles)
	})
	if smallErr != nil {
		tb.Fatalf("generate small tree: %v", smallErr)
	}
	return smallSrc
}

// bigTree returns a source folder holding one large incompressible file.
func bigTree(tb testing.TB) string {
	bigOnce.Do(func() {
		bigSrc = filepath.Join(work(tb), "src-big")
		if bigErr = os.MkdirAll(bigSrc, 0o755); bigErr == nil {
			bigErr = GenFile(filepath.Join(bigSrc, "big.bin"), bigSize(), 42)
		}
	})
	if bigErr != nil {
		tb.Fatalf("generate big file: %v", bigErr)
	}
	return bigSrc
}

func register(s *Scenario) {
	reportMu.Lock()
	defer reportMu.Unlock()
	scenarios = append(scenarios, s)
}

// printReport writes every scenario measured in this process as one table
// with the machine it ran on, then removes the data.
func printReport(w io.Writer) {
	defer cleanupWork()
	reportMu.Lock()
	defer reportMu.Unlock()
	if len(scenarios) == 0 {
		return
	}
	fmt.Fprintf(w, "\n######## ferry side-by-side benchmark  %s\n", time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %d cores, %s, data on %s, load average now %s; warm page cache for every tool; before each run sync(2), then a wait (up to %v) until the machine is quiet (busy < %.0f%% for 200ms)\n",
		runtime.NumCPU(), kernel(), fsType(workDir), loadAvg(), quietMax, QuietBusyShare*100)
	fmt.Fprintf(w, "peers: %s | %s | %s\n", version("rsync", "--version"), version("rclone", "version"), version("ssh", "-V"))
	how := "GNU time %M: wait4 rusage of the tool, including descendants it reaped"
	if gnuTime() == "" {
		how = "wait4 rusage without GNU time: an upper bound that includes the benchmark process's own peak, see README"
	}
	fmt.Fprintf(w, "runs per tool: %d, median shown; maxRSS = peak of the largest single client process (%s); treeRSS = peak sum over the client process tree, /proc sampled every %v; server-side processes not counted\n\n", reps(), how, SampleEvery)
	for _, s := range scenarios {
		s.Print(w)
		fmt.Fprintln(w)
	}
}

// loadAvg returns the machine's 1, 5 and 15 minute load averages. Other
// work on the machine slows every tool's wall time; the report carries the
// load so a reader can judge, and the cpu column is far less affected.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func kernel() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "linux"
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return "linux " + string(b)
}

func fsType(dir string) string {
	out, err := exec.Command("findmnt", "-n", "-o", "FSTYPE", "-T", dir).Output()
	if err != nil {
		return "unknown fs"
	}
	return strings.TrimSpace(string(out))
}

func version(name string, arg string) string {
	out, err := exec.Command(name, arg).CombinedOutput()
	if err != nil && len(out) == 0 {
		return name + " missing"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// tool is one contender: how to run it from src into dst.
type tool struct {
	name string
	cmd  func(src, dst string) Command
	// why is set when the tool cannot run here at all.
	why string
}

// side says how to run one workload for every tool.
type side struct {
	src string
	// prepare makes the destination for one run and returns it.
	prepare func(t tool, rep int) string
	// check verifies the destination afterwards (untimed), so a tool that
	// skips work cannot win.
	check func(src, dst string) error
	// done, if set, cleans the destination up (untimed).
	done func(dst string)
	// server, if set, is the pid of a server whose finished sessions'
	// CPU is charged to the run (see ReapedCPU).
	server func() int
}

// runSide runs every tool reps times, interleaved and with the order
// rotated each round so drift (page cache, writeback, other load) hits all
// tools alike. A tool that fails is recorded as not measured and dropped.
func runSide(b *testing.B, s *Scenario, tools []tool, sd side) {
	b.Helper()
	before := loadAvg()
	defer func() { s.Note("load average (1, 5, 15 min) before: %s; after: %s", before, loadAvg()) }()
	failed := map[string]bool{}
	for _, t := range tools {
		if t.why != "" {
			s.Missing(t.name, t.why)
			failed[t.name] = true
		}
	}
	n := reps()
	for rep := 0; rep < n; rep++ {
		for i := range tools {
			t := tools[(i+rep)%len(tools)]
			if failed[t.name] {
				continue
			}
			dst := sd.prepare(t, rep)
			syscall.Sync()
			Quiesce(quietMax)
			srvPID, srvBefore := 0, time.Duration(0)
			var watch *ServerWatch
			if sd.server != nil {
				srvPID = sd.server()
				settle(srvPID)
				srvBefore = ReapedCPU(srvPID)
				watch = WatchServer(srvPID)
			}
			ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout())
			res, err := Measure(ctx, t.cmd(sd.src, dst))
			cancel()
			if srvPID != 0 {
				settle(srvPID)
				// Both are lower bounds; see ServerWatch.
				res.ServerCPU = max(ReapedCPU(srvPID)-srvBefore, watch.Stop())
			}
			if err == nil && sd.check != nil {
				err = sd.check(sd.src, dst)
			}
			if sd.done != nil {
				sd.done(dst)
			}
			if err != nil {
				b.Logf("%s: %s: %v", s.Name, t.name, err)
				s.Missing(t.name, err.Error())
				failed[t.name] = true
				continue
			}
			b.Logf("%s: %s run %d: %.3fs cpu %.3fs server cpu %.3fs maxRSS %s treeRSS %s load %s", s.Name, t.name, rep+1,
				res.Wall.Seconds(), res.CPU.Seconds(), res.ServerCPU.Seconds(), mib(res.MaxRSSKiB), mib(res.TreeRSSKiB), loadAvg())
			s.Add(t.name, res)
		}
	}
}

// settle waits (up to 5s) until the server has no session left, so the
// CPU of the run's sessions has been reaped into its counters.
func settle(pid int) {
	deadline := time.Now().Add(5 * time.Second)
	for HasChildren(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// report publishes a scenario's medians and ratios as benchmark metrics and
// prints its table at once, so a run cut short keeps the tables it made;
// TestMain prints them all together again at the end.
func report(b *testing.B, s *Scenario) {
	b.Helper()
	fmt.Println()
	s.Print(os.Stdout)
	for _, sum := range s.Summaries() {
		if sum.N == 0 || sum.MissingReason != "" {
			continue
		}
		b.ReportMetric(sum.Median.Seconds(), sum.Tool+"-s")
		b.ReportMetric(sum.CPU.Seconds(), sum.Tool+"-cpu-s")
		b.ReportMetric(float64(sum.MaxRSSKiB)/1024, sum.Tool+"-maxRSS-MiB")
		b.ReportMetric(float64(sum.TreeRSSKiB)/1024, sum.Tool+"-treeRSS-MiB")
	}
	for _, v := range s.Ratios() {
		if v.OK {
			b.ReportMetric(v.Value, "x-"+v.Num+"/"+v.Den)
		}
	}
}

// sameTree checks that dst holds every regular file of src with the same
// size and content. Files up to 1 MiB are compared whole; larger ones at
// 16 spread 64 KiB windows, which catches truncation, holes and shifts
// without reading a gigabyte twice per run.
func sameTree(src, dst string) error {
	n := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		n++
		return sameFile(p, filepath.Join(dst, rel))
	})
	if err != nil {
		return fmt.Errorf("target differs from source: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("source %s is empty", src)
	}
	return nil
}

func sameFile(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	sa, _ := fa.Stat()
	sb, _ := fb.Stat()
	if sa.Size() != sb.Size() {
		return fmt.Errorf("%s: size %d, source %d", b, sb.Size(), sa.Size())
	}
	size := sa.Size()
	win := int64(64 << 10)
	var offs []int64
	if size <= 1<<20 {
		offs, win = []int64{0}, size
	} else {
		for i := int64(0); i < 16; i++ {
			offs = append(offs, (size-win)*i/15)
		}
	}
	ba, bb := make([]byte, win), make([]byte, win)
	for _, off := range offs {
		if _, err := fa.ReadAt(ba, off); err != nil && err != io.EOF {
			return err
		}
		if _, err := fb.ReadAt(bb, off); err != nil && err != io.EOF {
			return err
		}
		if !bytes.Equal(ba, bb) {
			return fmt.Errorf("%s: content differs near offset %d", b, off)
		}
	}
	return nil
}
