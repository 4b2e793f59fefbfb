package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuTimes are the whole machine's CPU counters from the first line of
// /proc/stat, in clock ticks: busy (user, nice, system, irq, softirq,
// steal) and idle (idle, iowait).
type cpuTimes struct{ busy, idle int64 }

// parseCPUTimes reads the "cpu" line of /proc/stat.
func parseCPUTimes(line string) (cpuTimes, error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("not a /proc/stat cpu line: %q", line)
	}
	var v [8]int64
	for i := range v {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat field %d: %w", i+1, err)
		}
		v[i] = n
	}
	// user nice system idle iowait irq softirq steal
	return cpuTimes{busy: v[0] + v[1] + v[2] + v[5] + v[6] + v[7], idle: v[3] + v[4]}, nil
}

func readCPUTimes() (cpuTimes, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return cpuTimes{}, fmt.Errorf("/proc/stat is empty: %v", sc.Err())
	}
	return parseCPUTimes(sc.Text())
}

// busyShare is the share of CPU time spent busy between a and b.
func busyShare(a, b cpuTimes) float64 {
	busy, idle := b.busy-a.busy, b.idle-a.idle
	if busy+idle <= 0 {
		return 0
	}
	return float64(busy) / float64(busy+idle)
}

// QuietBusyShare is the machine's busy share below which Quiesce deems it
// quiet.
const QuietBusyShare = 0.15

// Quiesce waits until the machine has been quiet for a window of 200ms,
// at most max, and returns how long it waited. Between two runs the kernel
// still works off the last one (writing back, freeing the inodes and
// dentries of a removed target of 10,000 files); that work would
// otherwise land on whichever tool runs next.
func Quiesce(max time.Duration) time.Duration {
	const window = 200 * time.Millisecond
	start := time.Now()
	for time.Since(start) < max {
		a, err := readCPUTimes()
		if err != nil {
			return time.Since(start) // no /proc: nothing to wait for
		}
		time.Sleep(window)
		b, err := readCPUTimes()
		if err != nil || busyShare(a, b) < QuietBusyShare {
			break
		}
	}
	return time.Since(start)
}
