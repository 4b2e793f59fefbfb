package watch

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLatencyFigures measures the time from a 4 KiB file's close to its
// hint, over 200 files written 20ms apart, with the default options. It
// reports figures; the only assertion is that every file is hinted.
func TestLatencyFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	r := newRig(t, Options{})
	const n = 200
	closed := make(map[string]time.Time, n)
	data := strings.Repeat("x", 4096)
	want := make([]string, 0, n)
	for i := range n {
		name := fmt.Sprintf("lat%03d", i)
		r.write(name, data)
		closed[name] = time.Now()
		want = append(want, name)
		time.Sleep(20 * time.Millisecond)
	}
	got := r.waitFor(0, want...)
	var lat []time.Duration
	for _, h := range got {
		if c, ok := closed[h.Path]; ok {
			lat = append(lat, h.at.Sub(c))
			delete(closed, h.Path)
		}
	}
	slices.Sort(lat)
	t.Logf("close-to-hint latency over %d files (Debounce %v, Settle %v): p50 %v, p99 %v, max %v",
		len(lat), DefaultDebounce, DefaultSettle,
		lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond),
		lat[len(lat)-1].Round(time.Millisecond))
}

// BenchmarkIdle100k builds 100,000 files in 1,000 directories, watches
// them, and reports the set-up time, the idle CPU over a few seconds (of the
// whole test process, as a percentage of one core) and the memory held.
// Run it with -bench Idle100k -benchtime 1x.
func BenchmarkIdle100k(b *testing.B) {
	root := b.TempDir()
	start := time.Now()
	for d := range 1000 {
		dir := fmt.Sprintf("%s/d%02d/e%02d", root, d/100, d%100)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		for f := range 100 {
			fh, err := os.Create(fmt.Sprintf("%s/f%03d", dir, f))
			if err != nil {
				b.Fatal(err)
			}
			fh.Close()
		}
	}
	b.Logf("made 100,000 files in 1,000 directories in %v", time.Since(start).Round(time.Millisecond))
	b.ResetTimer()
	for range b.N {
		heapBefore, _ := memFigures()
		start = time.Now()
		w, err := New(root, Options{})
		if err != nil {
			b.Fatal(err)
		}
		setup := time.Since(start)
		if st := w.Stats(); st.Dirs != 1+10+1000 {
			b.Fatalf("watching %d directories, want %d", st.Dirs, 1+10+1000)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		time.Sleep(200 * time.Millisecond) // let start-up finish before measuring idle
		cpu0, wall0 := cpuTime(), time.Now()
		time.Sleep(5 * time.Second)
		cpu, wall := cpuTime()-cpu0, time.Since(wall0)
		heapAfter, rss := memFigures()
		cancel()
		<-done
		w.Close()
		b.ReportMetric(setup.Seconds()*1000, "setup-ms")
		b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "idle-cpu-%")
		b.ReportMetric(float64(heapAfter-heapBefore)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memFigures returns the live heap after a GC and the process's RSS.
func memFigures() (heap, rss uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			rss = kb << 10
		}
	}
	return ms.HeapAlloc, rss
}

// TestBurstFigures makes 10,000 files in 100 new directories as fast as it
// can and reports how long after the last file every path had its hint.
func TestBurstFigures(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	r := newRig(t, Options{})
	want := make([]string, 0, 10100)
	start := time.Now()
	for d := range 100 {
		dir := fmt.Sprintf("burst/d%02d", d)
		r.mkdirAll(dir)
		want = append(want, dir)
		for f := range 100 {
			name := fmt.Sprintf("%s/f%03d", dir, f)
			r.write(name, "x")
			want = append(want, name)
		}
	}
	made := time.Since(start)
	r.waitFor(0, want...)
	all := time.Since(start)
	t.Logf("burst of 10,000 files in 100 new directories: made in %v, all hinted %v after the first, %v after the last",
		made.Round(time.Millisecond), all.Round(time.Millisecond), (all - made).Round(time.Millisecond))
}
