package bench

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ServerWatch follows the processes a server (sshd) starts during one run,
// also after they stop being its descendants, and adds up their CPU time.
// The server's own counters of reaped children (ReapedCPU) miss a process
// whose parent exits first: sshd's session process can end before the
// internal-sftp process it started, which is then reparented to init and
// reaped there, so none of its CPU reaches sshd. That happens when a
// client drops the connection without closing its channels first.
//
// Every SampleServerEvery it reads each process's own user and system
// time; what a process uses after its last sample (at most one interval)
// is not seen, so the sum is a lower bound, as ReapedCPU is. Use the
// larger of the two.
type ServerWatch struct {
	root int
	done chan struct{}
	wg   sync.WaitGroup

	mu  sync.Mutex
	cpu map[int]time.Duration // pid -> own CPU time last seen
}

// SampleServerEvery is how often ServerWatch looks at the server's processes.
const SampleServerEvery = 50 * time.Millisecond

// WatchServer starts following the processes under root.
func WatchServer(root int) *ServerWatch {
	w := &ServerWatch{root: root, done: make(chan struct{}), cpu: map[int]time.Duration{}}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		t := time.NewTicker(SampleServerEvery)
		defer t.Stop()
		for {
			w.sample()
			select {
			case <-w.done:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// Stop takes a last sample and returns the CPU time of every process seen
// under root since WatchServer (root's own time not included).
func (w *ServerWatch) Stop() time.Duration {
	close(w.done)
	w.wg.Wait()
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	var sum time.Duration
	for _, d := range w.cpu {
		sum += d
	}
	return sum
}

// sample reads every process once: new descendants of root join the
// watched set, and each watched process still alive has its time updated.
func (w *ServerWatch) sample() {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	type proc struct {
		ppid int
		cpu  time.Duration
	}
	procs := map[int]proc{}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, cpu, ok := procStat(pid)
		if !ok {
			continue
		}
		procs[pid] = proc{ppid, cpu}
		children[ppid] = append(children[ppid], pid)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	queue := append([]int(nil), children[w.root]...)
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if _, ok := w.cpu[pid]; !ok {
			w.cpu[pid] = 0
		}
		queue = append(queue, children[pid]...)
	}
	for pid, last := range w.cpu {
		if p, ok := procs[pid]; ok && p.cpu > last {
			w.cpu[pid] = p.cpu
		}
	}
}

// procStat reads a process's parent and its own user plus system time.
func procStat(pid int) (ppid int, cpu time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	return parseProcStat(b)
}

// parseProcStat parses /proc/PID/stat. The command name is in parentheses
// and may hold spaces and parentheses; the fields after the last ')' are
// state(3) ppid(4) ... utime(14) stime(15).
func parseProcStat(b []byte) (ppid int, cpu time.Duration, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, 0, false
	}
	pp, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	st, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, false
	}
	return pp, time.Duration(ut+st) * time.Second / clockTicks, true
}
