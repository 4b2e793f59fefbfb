package bench

import (
	"strings"
	"testing"
	"time"
)

func TestScenarioRatios(t *testing.T) {
	s := NewScenario("demo")
	for _, w := range []time.Duration{3, 1, 2} {
		s.Add("a", Result{Wall: w * time.Second, CPU: w * time.Second / 2, MaxRSSKiB: 1024})
	}
	for _, w := range []time.Duration{4, 4, 5, 6} {
		s.Add("b", Result{Wall: w * time.Second, CPU: w * time.Second})
	}
	s.Missing("c", "not built")
	s.Want(Ratio{Num: "a", Den: "b", Target: 0.5})
	s.Want(Ratio{Num: "a", Den: "b", Target: 0.4, Strict: true})
	s.Want(Ratio{Num: "a", Den: "c", Target: 1})
	s.Want(Ratio{Num: "b", Den: "a", Info: true})

	tests := []struct {
		name   string
		idx    int
		ok     bool
		value  float64
		wantOK bool
	}{
		{"a over b meets 0.5", 0, true, 2.0 / 4.5, true},
		{"a over b misses strict 0.4", 1, true, 2.0 / 4.5, false},
		{"missing tool gives no ratio", 2, false, 0, false},
		{"context ratio has no verdict", 3, true, 4.5 / 2.0, false},
	}
	rs := s.Ratios()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := rs[tc.idx]
			if v.OK != tc.ok || (tc.ok && (v.Value < tc.value-1e-9 || v.Value > tc.value+1e-9)) {
				t.Fatalf("ratio = %+v, want ok=%v value=%v", v, tc.ok, tc.value)
			}
			if v.Met() != tc.wantOK {
				t.Fatalf("Met() = %v, want %v", v.Met(), tc.wantOK)
			}
		})
	}
	s.Note("resumed: %.2fx", 1.05)
	var sb strings.Builder
	s.Print(&sb)
	out := sb.String()
	for _, want := range []string{"2.000s", "4.500s", "not measured [1]", "[1] not built", "2.25x", "for context", "resumed: 1.05x", "min 0.25x, cpu 0.22x", "MET", "MISSED", "n/a"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
