package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Result is one measured run of a command.
type Result struct {
	Wall time.Duration
	// CPU is user plus system time of the tool and every descendant it
	// reaped (wait4 rusage). On a busy machine it moves far less than
	// Wall, so it is the figure to trust when the load is high.
	CPU time.Duration
	// ServerCPU is CPU time spent by the server for this run (sshd and
	// what it ran: internal-sftp, a remote rsync), when the benchmark can
	// see it; zero otherwise. It is the larger of what the server reaped
	// and what ServerWatch saw its processes use.
	ServerCPU time.Duration
	// MaxRSSKiB is the kernel's peak resident set of the single largest
	// process in the tree: wait4 reports max(own, reaped descendants') for
	// the child, so a grandchild such as the ssh that rsync starts counts
	// as long as its parent waited for it. It is exact but not a sum.
	// See Wrapped for how it is taken.
	MaxRSSKiB int64
	// Wrapped is true when the figure came from GNU time's %M. Go starts
	// children with vfork, and the kernel then charges the parent's own
	// peak RSS (the benchmark process, tens of MiB) to the child at exec,
	// so a direct wait4 figure is only an upper bound; GNU time forks
	// from its own tiny process and reports the child's true peak.
	Wrapped bool
	// TreeRSSKiB is the largest sum of resident memory over the whole
	// process tree seen while sampling /proc every SampleEvery. It shows
	// tools that split work across processes (rsync's sender, generator and
	// receiver) but can miss short peaks.
	TreeRSSKiB int64
	Stdout     string
	Stderr     string
}

// SampleEvery is how often the process tree's memory is sampled.
var SampleEvery = 20 * time.Millisecond

// Command is a program to measure: Env is added to the current environment.
type Command struct {
	Name string
	Args []string
	Env  []string
}

func (c Command) String() string { return strings.Join(append([]string{c.Name}, c.Args...), " ") }

// Measure runs c and returns its wall time (from just before fork to reaped
// exit) and peak memory. Stdout and stderr are captured. A non-zero exit
// is returned as an error quoting the tail of stderr, together with the
// partial Result. Cancelling ctx kills the whole process tree (it runs in
// its own process group). Safe for concurrent use.
func Measure(ctx context.Context, c Command) (Result, error) {
	return measure(ctx, c, gnuTime())
}

// measure is Measure with the GNU time wrapper at timeBin, or none if "".
func measure(ctx context.Context, c Command, timeBin string) (Result, error) {
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	cmd.Env = append(os.Environ(), c.Env...)
	var outBuf, errBuf bytes.Buffer
	rssFile := ""
	if timeBin != "" {
		f, err := os.CreateTemp("", "bench-rss-")
		if err != nil {
			return Result{}, fmt.Errorf("temp file for GNU time: %w", err)
		}
		f.Close()
		rssFile = f.Name()
		defer os.Remove(rssFile)
		cmd.Args = append([]string{"time", "-f", "%M", "-o", rssFile, "--", cmd.Path}, cmd.Args[1:]...)
		cmd.Path = timeBin
	}
	// Own process group, so a timeout kills the whole tree (the wrapper,
	// the tool and anything it started such as ssh), not just the root.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Stdout, cmd.Stderr = &outBuf, &errBuf
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("start %s: %w", c.Name, err)
	}
	s := startSampler(cmd.Process.Pid, rssFile != "")
	werr := cmd.Wait()
	wall := time.Since(start)
	tree := s.stop()
	res := Result{Wall: wall, TreeRSSKiB: tree, Stdout: outBuf.String(), Stderr: errBuf.String(),
		CPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	if rssFile != "" {
		res.Wrapped = true
		res.MaxRSSKiB = readTimeRSS(rssFile)
	} else if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.MaxRSSKiB = ru.Maxrss // KiB on Linux
	}
	if res.TreeRSSKiB < res.MaxRSSKiB {
		// The sampler missed the peak; the sum is at least the largest one.
		res.TreeRSSKiB = res.MaxRSSKiB
	}
	if werr != nil {
		return res, fmt.Errorf("run %s: %w: %s", c, werr, tail(res.Stderr+res.Stdout, 600))
	}
	return res, nil
}

var (
	timeOnce sync.Once
	timePath string
)

// gnuTime returns the path of a working GNU time, or "" when there is none
// (then MaxRSSKiB is wait4's figure, an upper bound; see Result.Wrapped).
// BENCH_NO_TIME=1 turns the wrapper off.
func gnuTime() string {
	timeOnce.Do(func() {
		if os.Getenv("BENCH_NO_TIME") != "" {
			return
		}
		p, err := exec.LookPath("/usr/bin/time")
		if err != nil {
			return
		}
		f, err := os.CreateTemp("", "bench-rss-")
		if err != nil {
			return
		}
		f.Close()
		defer os.Remove(f.Name())
		if exec.Command(p, "-f", "%M", "-o", f.Name(), "--", "true").Run() == nil && readTimeRSS(f.Name()) > 0 {
			timePath = p
		}
	})
	return timePath
}

// readTimeRSS parses the last line of a GNU time -f %M output file (earlier
// lines may say the command exited non-zero).
func readTimeRSS(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	n, _ := strconv.ParseInt(strings.TrimSpace(lines[len(lines)-1]), 10, 64)
	return n
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

type sampler struct {
	done chan struct{}
	wg   sync.WaitGroup
	peak int64
}

// startSampler samples the tree under root; with skipRoot the root is a
// measuring wrapper whose own memory is left out.
func startSampler(root int, skipRoot bool) *sampler {
	s := &sampler{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(SampleEvery)
		defer t.Stop()
		for {
			kib := treeRSS(root)
			if skipRoot {
				kib -= rssKiB(root)
			}
			if kib > s.peak {
				s.peak = kib
			}
			select {
			case <-s.done:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() int64 {
	close(s.done)
	s.wg.Wait()
	return s.peak
}

// treeRSS sums VmRSS over root and all its descendants, in KiB. Processes
// that vanish while being read are skipped.
func treeRSS(root int) int64 {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, ok := parentOf(pid); ok {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var sum int64
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		sum += rssKiB(pid)
		queue = append(queue, children[pid]...)
	}
	return sum
}

func parentOf(pid int) (int, bool) {
	ppid, _, ok := procStat(pid)
	return ppid, ok
}

// ReapedCPU returns the user plus system time of all reaped descendants of
// pid (the cutime and cstime fields of /proc/PID/stat): for a daemon such as
// sshd, the CPU its finished sessions used. It returns 0 when pid is gone.
func ReapedCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	// After ')': state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0
	}
	cu, _ := strconv.ParseInt(f[13], 10, 64)
	cs, _ := strconv.ParseInt(f[14], 10, 64)
	return time.Duration(cu+cs) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on every Linux that Go supports.
const clockTicks = 100

// HasChildren reports whether pid has any live child process.
func HasChildren(pid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := parentOf(p); ok && pp == pid {
			return true
		}
	}
	return false
}

var pageKiB = int64(os.Getpagesize() / 1024)

func rssKiB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * pageKiB
}
