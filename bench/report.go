package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Scenario collects the repeated runs of several tools on one workload and
// the ratios the issue sets as targets. Safe for concurrent use.
type Scenario struct {
	Name string

	mu      sync.Mutex
	order   []string
	runs    map[string][]Result
	missing map[string]string
	ratios  []Ratio
	notes   []string
}

// Ratio is a target of the form Num's median time / Den's median time
// compared against Target (lower is better; Strict means "<" not "<=").
type Ratio struct {
	Num, Den string
	Target   float64
	Strict   bool
	// Info marks a ratio shown for context, with no target.
	Info bool
}

// NewScenario returns an empty scenario named name.
func NewScenario(name string) *Scenario {
	return &Scenario{Name: name, runs: map[string][]Result{}, missing: map[string]string{}}
}

// Add records one run of tool.
func (s *Scenario) Add(tool string, r Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.touch(tool)
	s.runs[tool] = append(s.runs[tool], r)
}

// Missing records that tool could not be measured and why; it shows in the
// table instead of figures.
func (s *Scenario) Missing(tool, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.touch(tool)
	s.missing[tool] = why
}

// Note adds a line printed under the table, for figures that are not
// times (such as bytes sent by a resumed upload).
func (s *Scenario) Note(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notes = append(s.notes, fmt.Sprintf(format, args...))
}

// Want declares a ratio target to be computed from the medians.
func (s *Scenario) Want(r Ratio) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ratios = append(s.ratios, r)
}

func (s *Scenario) touch(tool string) {
	if !slices.Contains(s.order, tool) {
		s.order = append(s.order, tool)
	}
}

// Summary is a tool's median figures over its runs.
type Summary struct {
	Tool          string
	N             int
	Median        time.Duration
	Min, Max      time.Duration
	CPU           time.Duration // median user+system time
	ServerCPU     time.Duration // median server-side CPU, 0 where unseen
	MaxRSSKiB     int64         // median over runs of the largest single process
	TreeRSSKiB    int64         // median over runs of the sampled whole-tree peak
	MissingReason string
}

// Summaries returns one Summary per tool in the order tools were first seen.
func (s *Scenario) Summaries() []Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Summary
	for _, tool := range s.order {
		rs := s.runs[tool]
		sum := Summary{Tool: tool, N: len(rs), MissingReason: s.missing[tool]}
		if len(rs) > 0 {
			walls := make([]time.Duration, len(rs))
			cpus := make([]time.Duration, len(rs))
			srv := make([]time.Duration, len(rs))
			maxs := make([]int64, len(rs))
			trees := make([]int64, len(rs))
			for i, r := range rs {
				walls[i], cpus[i], maxs[i], trees[i] = r.Wall, r.CPU, r.MaxRSSKiB, r.TreeRSSKiB
				srv[i] = r.ServerCPU
			}
			sum.Median = median(walls)
			sum.Min, sum.Max = slices.Min(walls), slices.Max(walls)
			sum.CPU = median(cpus)
			sum.ServerCPU = median(srv)
			sum.MaxRSSKiB = median(maxs)
			sum.TreeRSSKiB = median(trees)
		}
		out = append(out, sum)
	}
	return out
}

// RatioValue is a computed Ratio; OK is false when either side is missing.
// Value compares wall times (what the targets are about); CPU compares
// user+system times, client and server together, for context on a loaded
// machine.
type RatioValue struct {
	Ratio
	Value float64
	// Min compares the fastest runs: under heavy outside load the least
	// disturbed run of each tool is often the fairer pair.
	Min float64
	CPU float64
	OK  bool
}

// Met reports whether the ratio was measured and meets its target.
func (v RatioValue) Met() bool {
	if !v.OK || v.Info {
		return false
	}
	if v.Strict {
		return v.Value < v.Target
	}
	return v.Value <= v.Target
}

// Ratios computes the declared ratios from the medians.
func (s *Scenario) Ratios() []RatioValue {
	med := map[string]Summary{}
	for _, sum := range s.Summaries() {
		if sum.N > 0 && sum.MissingReason == "" {
			med[sum.Tool] = sum
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []RatioValue
	for _, r := range s.ratios {
		n, okN := med[r.Num]
		d, okD := med[r.Den]
		v := RatioValue{Ratio: r, OK: okN && okD && d.Median > 0}
		if v.OK {
			v.Value = n.Median.Seconds() / d.Median.Seconds()
			v.Min = n.Min.Seconds() / d.Min.Seconds()
			if dc := d.CPU + d.ServerCPU; dc > 0 {
				v.CPU = (n.CPU + n.ServerCPU).Seconds() / dc.Seconds()
			}
		}
		out = append(out, v)
	}
	return out
}

// Print writes the scenario as a table: one row per tool, then the ratios,
// then why any tool was not measured.
func (s *Scenario) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "== %s\n", s.Name)
	fmt.Fprintf(tw, "tool\truns\tmedian\tmin\tmax\tcpu\tsrv-cpu\tmaxRSS\ttreeRSS\t\n")
	var notes []string
	for _, sum := range s.Summaries() {
		if sum.N == 0 || sum.MissingReason != "" {
			note := oneLine(sum.MissingReason)
			k := slices.Index(notes, note)
			if k < 0 {
				notes = append(notes, note)
				k = len(notes) - 1
			}
			fmt.Fprintf(tw, "%s\t%d\tnot measured [%d]\t\t\t\t\t\t\t\n", sum.Tool, sum.N, k+1)
			continue
		}
		srv := "-"
		if sum.ServerCPU > 0 {
			srv = secs(sum.ServerCPU)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", sum.Tool, sum.N,
			secs(sum.Median), secs(sum.Min), secs(sum.Max), secs(sum.CPU), srv, mib(sum.MaxRSSKiB), mib(sum.TreeRSSKiB))
	}
	for _, v := range s.Ratios() {
		op := "<="
		if v.Strict {
			op = "<"
		}
		target := fmt.Sprintf("target %s %.2f", op, v.Target)
		if v.Info {
			target = "for context"
		}
		switch {
		case !v.OK:
			fmt.Fprintf(tw, "ratio %s/%s\t\tn/a\t%s\t\t\t\t\t\t\n", v.Num, v.Den, target)
		case v.Info:
			fmt.Fprintf(tw, "ratio %s/%s\t\t%.2fx\t%s\t\tmin %.2fx, cpu %.2fx\t\t\t\t\n", v.Num, v.Den, v.Value, target, v.Min, v.CPU)
		default:
			verdict := "MET"
			if !v.Met() {
				verdict = "MISSED"
			}
			fmt.Fprintf(tw, "ratio %s/%s\t\t%.2fx\t%s\t%s\tmin %.2fx, cpu %.2fx\t\t\t\t\n", v.Num, v.Den, v.Value, target, verdict, v.Min, v.CPU)
		}
	}
	tw.Flush()
	s.mu.Lock()
	for _, n := range s.notes {
		fmt.Fprintf(w, "%s\n", n)
	}
	s.mu.Unlock()
	for i, n := range notes {
		fmt.Fprintf(w, "  [%d] %s\n", i+1, n)
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

func mib(kib int64) string { return fmt.Sprintf("%.1fMiB", float64(kib)/1024) }

func median[T int64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
