package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// The units parsers are exported so that command-line flags (--bwlimit,
// --chunk-size) read the same syntax as the file.

var errNotSize = errors.New("not a size (e.g. 4096, 32K, 1MiB)")

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// ParseSize reads a byte count: 4096, 32K, 32KiB, 1.5M, 1G, 10MB. K, M, G, T
// and the -iB forms are 1024-based; KB, MB, GB, TB are 1000-based. Units are
// case-insensitive and may follow one space. The result is never negative;
// a size that is not a whole number of bytes or overflows is an error.
func ParseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimPrefix(s[i:], " "))
	mult, ok := sizeUnits[unit]
	if num == "" || !ok {
		return 0, errNotSize
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, errNotSize
	}
	v := f * mult
	if v >= math.MaxInt64 {
		return 0, errors.New("too large")
	}
	if v != math.Trunc(v) {
		return 0, errors.New("not a whole number of bytes")
	}
	return int64(v), nil
}

// ParseRate reads a size per second: 10M, 10MiB/s, 500K/s. 0 means unlimited.
func ParseRate(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if t, ok := strings.CutSuffix(s, "/s"); ok {
		s = t
	}
	return ParseSize(s)
}

// ParseDuration reads a Go duration (90s, 1m30s, 1.5h) that may also use d
// for days of 24 hours (7d, 1d12h, 0.5d). A bare number other than 0 is an
// error: it has no unit.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty")
	}
	neg := false
	rest := s
	if rest[0] == '-' || rest[0] == '+' {
		neg = rest[0] == '-'
		rest = rest[1:]
	}
	if !strings.ContainsRune(rest, 'd') {
		return time.ParseDuration(s)
	}
	// Split off each days term and hand the rest to time.ParseDuration.
	var total time.Duration
	var goPart strings.Builder
	for rest != "" {
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.') {
			i++
		}
		j := i
		for j < len(rest) && !(rest[j] >= '0' && rest[j] <= '9' || rest[j] == '.') {
			j++
		}
		if i == 0 || j == i {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		if rest[i:j] == "d" {
			f, err := strconv.ParseFloat(rest[:i], 64)
			if err != nil || f*24 > float64(math.MaxInt64/int64(time.Hour)) {
				return 0, fmt.Errorf("invalid duration %q", s)
			}
			total += time.Duration(f * 24 * float64(time.Hour))
		} else {
			goPart.WriteString(rest[:j])
		}
		rest = rest[j:]
	}
	if goPart.Len() > 0 {
		d, err := time.ParseDuration(goPart.String())
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		if total > math.MaxInt64-d {
			return 0, fmt.Errorf("invalid duration %q", s)
		}
		total += d
	}
	if neg {
		total = -total
	}
	return total, nil
}

// FormatSize prints n the way ParseSize reads it, exact: 32K, 1536K, 4096.
func FormatSize(n int64) string {
	units := []string{"T", "G", "M", "K"}
	for i, u := range units {
		m := int64(1) << (10 * (4 - i))
		if n >= m && n%m == 0 {
			return strconv.FormatInt(n/m, 10) + u
		}
	}
	return strconv.FormatInt(n, 10)
}
