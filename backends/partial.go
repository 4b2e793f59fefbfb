package backends

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// PartialPrefix starts the name of every partial file ferry writes. Listings
// skip such names when planning, and the watcher ignores them.
const PartialPrefix = ".ferry-partial-"

// PartialName returns the path of the partial file for an upload of a file of
// the given size and mtime to path. It lies in the same directory as path and
// is the same in every process, so a restarted ferry finds and resumes it; a
// different size or mtime gives a different name, so a stale partial is never
// resumed into a newer file.
func PartialName(path string, size int64, mtime time.Time) string {
	dir, name := Split(path)
	h := sha256.New()
	h.Write([]byte(path))
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(size))
	binary.BigEndian.PutUint64(b[8:], uint64(mtime.UnixNano()))
	h.Write(b[:])
	tag := hex.EncodeToString(h.Sum(nil)[:8])
	prefix := PartialPrefix + tag + "-"
	// Keep the whole partial name within MaxNameLen, cutting at a rune edge.
	if max := MaxNameLen - len(prefix); len(name) > max {
		name = name[:max]
		for len(name) > 0 && !utf8.ValidString(name) {
			name = name[:len(name)-1]
		}
	}
	return Join(dir, prefix+name)
}

// partialTagLen is the length of the hex tag in a partial name.
const partialTagLen = 16

// PartialKey returns what the partial at p shares with every other partial
// of the same upload: its directory, the prefix and the tag, which stands
// for the file's path, size and mtime. A backend may keep an upload's bytes
// under more than one name (a copy made on resume); each such name is the
// key, a '.' and a part of its own, then the rest of PartialName's, so
// that cleanup tells every partial of a planned upload from a stale one.
// ok is false when p is no partial of an upload (or has no tag).
func PartialKey(p string) (key string, ok bool) {
	dir, name := Split(p)
	n := len(PartialPrefix) + partialTagLen
	if len(name) <= n || !strings.HasPrefix(name, PartialPrefix) || (name[n] != '-' && name[n] != '.') {
		return "", false
	}
	for _, c := range []byte(name[len(PartialPrefix):n]) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return "", false
		}
	}
	return Join(dir, name[:n]), true
}

// PartialFinal returns the path of the file that the partial at p is an
// upload of: the name after its key (and a copy's own part). ok is false
// when p is no partial of an upload. A name cut to fit MaxNameLen gives a
// path that is not the file's; PartialKey of the file's PartialName tells.
func PartialFinal(p string) (final string, ok bool) {
	key, ok := PartialKey(p)
	if !ok {
		return "", false
	}
	dir, name := Split(p)
	_, k := Split(key)
	rest := name[len(k):] // "-name", or ".own-name" for a copy
	if rest[0] == '.' {
		i := strings.IndexByte(rest, '-')
		if i < 0 {
			return "", false
		}
		rest = rest[i:]
	}
	if len(rest) < 2 {
		return "", false
	}
	return Join(dir, rest[1:]), true
}

// IsPartialName reports whether the last element of p names a partial file.
func IsPartialName(p string) bool {
	_, name := Split(p)
	return strings.HasPrefix(name, PartialPrefix)
}

// ResumeOffset returns how many leading bytes of a partial file can be kept
// when resuming an upload of src. The partial holds n bytes. Writes with
// several requests in flight can leave holes or garbage anywhere in the last
// window bytes below n (they are issued in order, so never further down), so
// those bytes are compared with src and the result is the offset of the
// first byte that differs, or n when all match. A partial longer than src is
// cut to src's size first. The caller truncates the partial to the result
// before writing on.
func ResumeOffset(partial io.ReaderAt, n int64, src io.ReaderAt, srcSize, window int64) (int64, error) {
	if n > srcSize {
		n = srcSize
	}
	if n <= 0 {
		return 0, nil
	}
	start := max(n-window, 0)
	const chunk = 256 << 10
	pb := make([]byte, min(chunk, n-start))
	sb := make([]byte, len(pb))
	for off := start; off < n; {
		m := min(int64(len(pb)), n-off)
		got, err := partial.ReadAt(pb[:m], off)
		if err != nil && err != io.EOF {
			return 0, fmt.Errorf("read partial at %d: %w", off, err)
		}
		if _, err := src.ReadAt(sb[:got], off); err != nil && err != io.EOF {
			return 0, fmt.Errorf("read source at %d: %w", off, err)
		}
		if i := firstDiff(pb[:got], sb[:got]); i >= 0 {
			return off + int64(i), nil
		}
		if int64(got) < m {
			// The partial is shorter than its reported size.
			return off + int64(got), nil
		}
		off += m
	}
	return n, nil
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}
