package config

import (
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		name, in string
		want     int64
		bad      bool
	}{
		{"plain bytes", "4096", 4096, false},
		{"zero", "0", 0, false},
		{"K is KiB", "32K", 32 << 10, false},
		{"KiB", "32KiB", 32 << 10, false},
		{"lower case k", "32k", 32 << 10, false},
		{"KB is 1000-based", "32KB", 32000, false},
		{"MB is 1000-based", "10MB", 10_000_000, false},
		{"fraction of M", "1.5M", 3 << 19, false},
		{"G", "1G", 1 << 30, false},
		{"GiB", "2GiB", 2 << 30, false},
		{"T", "1T", 1 << 40, false},
		{"space before unit", "32 KiB", 32 << 10, false},
		{"B suffix", "512B", 512, false},
		{"fraction not whole bytes", "0.1K", 0, true},
		{"unknown unit", "32X", 0, true},
		{"no number", "K", 0, true},
		{"negative", "-1", 0, true},
		{"empty", "", 0, true},
		{"two dots", "1.2.3K", 0, true},
		{"overflow", "99999999999T", 0, true},
		{"words", "fast", 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseSize(c.in)
			if c.bad {
				if err == nil {
					t.Fatalf("ParseSize(%q) = %d, want an error", c.in, got)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
			}
		})
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{"10M": 10 << 20, "10MiB/s": 10 << 20, "500K/s": 500 << 10, "0": 0, "1MB/s": 1e6} {
		if got, err := ParseRate(in); err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"/s", "10M/h", "fast"} {
		if got, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseDuration(t *testing.T) {
	cases := []struct {
		name, in string
		want     time.Duration
		bad      bool
	}{
		{"seconds", "90s", 90 * time.Second, false},
		{"go compound", "1m30s", 90 * time.Second, false},
		{"zero", "0", 0, false},
		{"days", "7d", 7 * 24 * time.Hour, false},
		{"days and hours", "1d12h", 36 * time.Hour, false},
		{"fractional day", "0.5d", 12 * time.Hour, false},
		{"hours then days", "2h1d", 26 * time.Hour, false},
		{"negative days", "-1d", -24 * time.Hour, false},
		{"days and ms", "1d1ms", 24*time.Hour + time.Millisecond, false},
		{"bare number", "15", 0, true},
		{"words", "15 sec", 0, true},
		{"unit only", "d", 0, true},
		{"empty", "", 0, true},
		{"days overflow", "999999999d", 0, true},
		{"bad unit after days", "1dx", 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseDuration(c.in)
			if c.bad {
				if err == nil {
					t.Fatalf("ParseDuration(%q) = %v, want an error", c.in, got)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", c.in, got, err, c.want)
			}
		})
	}
}

func TestFormatSizeRoundTrips(t *testing.T) {
	for _, n := range []int64{0, 1, 1000, 1024, 32 << 10, 1536 << 10, 3 << 30, 5 << 40, 12345} {
		s := FormatSize(n)
		back, err := ParseSize(s)
		if err != nil || back != n {
			t.Errorf("FormatSize(%d) = %q, which parses as %d, %v", n, s, back, err)
		}
	}
}

func TestDidYouMean(t *testing.T) {
	known := []string{"keepalive", "keepalive_max_missed", "exclude", "name", "path", "port"}
	for in, want := range map[string]string{
		"keepalve": "keepalive", "exlude": "exclude", "nmae": "name", "Keepalive": "keepalive",
		"colour": "", "pth": "path", "keepalive_max_mised": "keepalive_max_missed",
	} {
		if got := didYouMean(in, known); got != want {
			t.Errorf("didYouMean(%q) = %q, want %q", in, got, want)
		}
	}
}
