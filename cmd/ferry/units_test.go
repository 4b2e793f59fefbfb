package main

import (
	"strings"
	"testing"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int64
		err  bool
	}{
		{name: "zero is unlimited", in: "0", want: 0},
		{name: "bytes", in: "4096", want: 4096},
		{name: "K is KiB", in: "500K", want: 500 << 10},
		{name: "M", in: "10M", want: 10 << 20},
		{name: "fraction of MiB", in: "1.5MiB", want: 3 << 19},
		{name: "per second suffix", in: "10M/s", want: 10 << 20},
		{name: "lower case", in: "2g", want: 2 << 30},
		{name: "SI kilobytes", in: "1KB", want: 1000},
		{name: "unknown unit", in: "5Q", err: true},
		{name: "negative", in: "-1M", err: true},
		{name: "empty", in: "", err: true},
		{name: "only a unit", in: "K", err: true},
		{name: "fraction of a byte", in: "0.5", err: true},
		{name: "overflow", in: "99999999T", err: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseRate(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("parseRate(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}

// FuzzParseRate checks that any accepted rate is non-negative and that the
// "/s" suffix never changes the value.
func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"0", "500K", "1.5MiB", "10M/s", "3G", "1e3", "..", "9223372036854775807", "-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parseRate(s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("parseRate(%q) = %d < 0", s, v)
		}
		if strings.HasSuffix(strings.TrimSpace(s), "/s") {
			return
		}
		w, err := parseRate(s + "/s")
		if err != nil || w != v {
			t.Fatalf("parseRate(%q/s) = %d, %v; without suffix %d", s, w, err, v)
		}
	})
}
