package config

import (
	"strings"
	"testing"
	"time"
	"unicode"
)

// FuzzParseSize holds ParseSize to its contract on any input: no panic, an
// accepted size is never negative, FormatSize prints it back to the same
// value, and units are case-insensitive.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "4096", "32K", "32KiB", "1.5M", "1G", "10MB", "1 GiB", " 7t ", "8e3", "1.", ".5K",
		"9223372036854775807", "9223372036854775808", "8388608T", "0.1", "1..2K", "-1", "K", "1kib/s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseSize(s)
		if err != nil {
			return
		}
		if v < 0 {
			t.Fatalf("ParseSize(%q) = %d < 0", s, v)
		}
		back, err := ParseSize(FormatSize(v))
		if err != nil || back != v {
			t.Fatalf("ParseSize(%q) = %d, printed %q, read back as %d, %v", s, v, FormatSize(v), back, err)
		}
		if isASCII(s) {
			for _, c := range []string{strings.ToUpper(s), strings.ToLower(s)} {
				if w, err := ParseSize(c); err != nil || w != v {
					t.Fatalf("ParseSize(%q) = %d, but ParseSize(%q) = %d, %v", s, v, c, w, err)
				}
			}
		}
	})
}

// FuzzParseDuration holds ParseDuration to its contract on any input: no
// panic; without a day unit it agrees with time.ParseDuration exactly; a
// leading minus negates an accepted duration.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"0", "90s", "1m30s", "1.5h", "7d", "1d12h", "0.5d", "-2d", "+1d", "d", "1dd", "1d1d",
		"106751d", "106752d", "9223372036854775807ns", "1e3d", "5", "", " 3d "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseDuration(s)
		if !strings.ContainsRune(s, 'd') {
			w, werr := time.ParseDuration(strings.TrimSpace(s))
			if (err == nil) != (werr == nil) || (err == nil && v != w) {
				t.Fatalf("ParseDuration(%q) = %v, %v; time.ParseDuration says %v, %v", s, v, err, w, werr)
			}
		}
		if err != nil {
			return
		}
		trimmed := strings.TrimSpace(s)
		if trimmed == "" || trimmed[0] == '-' || trimmed[0] == '+' {
			return
		}
		n, err := ParseDuration("-" + trimmed)
		if err != nil || n != -v {
			t.Fatalf("ParseDuration(%q) = %v, but ParseDuration(-%q) = %v, %v", s, v, trimmed, n, err)
		}
	})
}

func isASCII(s string) bool {
	for _, r := range s {
		if r > unicode.MaxASCII {
			return false
		}
	}
	return true
}
