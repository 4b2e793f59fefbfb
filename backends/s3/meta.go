package s3

import (
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"
)

// User metadata keys, as minio-go names them (without X-Amz-Meta-). Mtime
// holds unix seconds with a nine-digit fraction, the form other S3 tools
// read; Mode the permission bits in octal; Sha256 the hex SHA-256 of the
// content when ferry computed it before the upload.
const (
	metaMtime  = "Mtime"
	metaMode   = "Mode"
	metaSha256 = "Sha256"
)

// formatMtime writes t as a decimal number of seconds since the epoch,
// exact to the nanosecond, negative before 1970.
func formatMtime(t time.Time) string {
	sec, nsec := t.Unix(), int64(t.Nanosecond())
	if sec < 0 && nsec > 0 {
		// -1.25 s is sec -2, nsec 750000000.
		return fmt.Sprintf("-%d.%09d", -(sec + 1), 1e9-nsec)
	}
	if sec < 0 {
		return fmt.Sprintf("-%d.%09d", -sec, 0)
	}
	return fmt.Sprintf("%d.%09d", sec, nsec)
}

// parseMtime reads what formatMtime writes, and also plain integers and
// shorter fractions.
func parseMtime(s string) (time.Time, error) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	whole, frac, _ := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("mtime %q: %w", s, err)
	}
	var nsec int64
	if frac != "" {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		frac += strings.Repeat("0", 9-len(frac))
		if nsec, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return time.Time{}, fmt.Errorf("mtime %q: %w", s, err)
		}
	}
	if neg {
		sec, nsec = -sec, -nsec
	}
	return time.Unix(sec, nsec), nil
}

func formatMode(m fs.FileMode) string { return strconv.FormatUint(uint64(m.Perm()), 8) }

func parseMode(s string) (fs.FileMode, bool) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0, false
	}
	return fs.FileMode(n) & fs.ModePerm, true
}

// fileMeta is the user metadata of an uploaded file.
func fileMeta(mtime time.Time, mode fs.FileMode, sha string) map[string]string {
	m := map[string]string{metaMtime: formatMtime(mtime), metaMode: formatMode(mode)}
	if sha != "" {
		m[metaSha256] = sha
	}
	return m
}

// userMeta finds key in minio-go's UserMetadata, whose keys arrive with or
// without the X-Amz-Meta- prefix and in any case depending on the call.
func userMeta(m map[string]string, key string) (string, bool) {
	for k, v := range m {
		k = strings.TrimPrefix(strings.ToLower(k), "x-amz-meta-")
		if k == strings.ToLower(key) {
			return v, true
		}
	}
	return "", false
}
