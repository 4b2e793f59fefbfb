package state

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// ErrCorrupt says a record or the header could not be decoded.
var ErrCorrupt = errors.New("state file corrupt")

// encodeKey turns a slash-separated path into a key whose byte order is the
// engine's path order: '/' sorts below every other byte there, and NUL (which
// no safe path holds) is the only byte below it, so '/' becomes NUL. A
// directory's subtree is then one contiguous run of keys after it.
func encodeKey(p string) []byte {
	k := []byte(p)
	for i, c := range k {
		if c == '/' {
			k[i] = 0
		}
	}
	return k
}

func decodeKey(k []byte) string {
	b := make([]byte, len(k))
	for i, c := range k {
		if c == 0 {
			c = '/'
		}
		b[i] = c
	}
	return string(b)
}

// checkKey fails with ErrCorrupt unless k is what encodeKey makes of a
// path backends.CheckPath accepts. Only such keys sort in the engine's
// path order: a damaged key holding a raw '/' or an empty element would
// reach the planner out of order, and a ".." one outside the root. ASCII
// names are checked byte by byte, without allocating.
func checkKey(k []byte) error {
	if len(k) == 0 {
		return fmt.Errorf("empty record key: %w", ErrCorrupt)
	}
	for {
		i := bytes.IndexByte(k, 0)
		elem := k
		if i >= 0 {
			elem = k[:i]
		}
		if err := checkElem(elem); err != nil {
			return fmt.Errorf("record key %q: %v: %w", decodeKey(k), err, ErrCorrupt)
		}
		if i < 0 {
			return nil
		}
		k = k[i+1:]
	}
}

func checkElem(e []byte) error {
	if len(e) == 0 || len(e) > backends.MaxNameLen || string(e) == "." || string(e) == ".." {
		return backends.CheckName(string(e))
	}
	for _, c := range e {
		if c < 0x20 || c == 0x7f || c == '/' || c >= 0x80 {
			return backends.CheckName(string(e))
		}
	}
	return nil
}

// subtreePrefix is the key prefix of everything strictly inside p.
func subtreePrefix(p string) []byte {
	return append(encodeKey(p), 0)
}

// Record layout, all varints: mode, size, mtime seconds, mtime nanoseconds,
// link target length and bytes, hash length and bytes (the raw SHA-256, 32
// bytes, or 0 when unknown). About 12 bytes for a small file without a link.
func encodeValue(fi *backends.FileInfo) []byte {
	b := make([]byte, 0, 24+len(fi.LinkTarget))
	b = binary.AppendUvarint(b, uint64(fi.Mode))
	b = binary.AppendVarint(b, fi.Size)
	b = binary.AppendVarint(b, fi.ModTime.Unix())
	b = binary.AppendUvarint(b, uint64(fi.ModTime.Nanosecond()))
	b = binary.AppendUvarint(b, uint64(len(fi.LinkTarget)))
	b = append(b, fi.LinkTarget...)
	var h []byte
	if len(fi.Hash) == 64 {
		if raw, err := hex.DecodeString(strings.ToLower(fi.Hash)); err == nil {
			h = raw
		}
	}
	b = binary.AppendUvarint(b, uint64(len(h)))
	return append(b, h...)
}

func decodeValue(p string, v []byte) (backends.FileInfo, error) {
	fi := backends.FileInfo{Path: p}
	bad := func(what string) (backends.FileInfo, error) {
		return backends.FileInfo{}, fmt.Errorf("record %q: bad %s: %w", p, what, ErrCorrupt)
	}
	mode, n := binary.Uvarint(v)
	if n <= 0 || mode > 1<<32-1 {
		return bad("mode")
	}
	v = v[n:]
	size, n := binary.Varint(v)
	if n <= 0 || size < 0 {
		return bad("size")
	}
	v = v[n:]
	sec, n := binary.Varint(v)
	if n <= 0 {
		return bad("mtime")
	}
	v = v[n:]
	nsec, n := binary.Uvarint(v)
	if n <= 0 || nsec >= 1e9 {
		return bad("mtime")
	}
	v = v[n:]
	ll, n := binary.Uvarint(v)
	if n <= 0 || ll > uint64(len(v)-n) {
		return bad("link target")
	}
	link := string(v[n : n+int(ll)])
	v = v[n+int(ll):]
	hl, n := binary.Uvarint(v)
	if n <= 0 || hl != uint64(len(v)-n) || (hl != 0 && hl != 32) {
		return bad("hash")
	}
	fi.Mode = fs.FileMode(mode)
	fi.Size = size
	fi.ModTime = time.Unix(sec, int64(nsec))
	fi.LinkTarget = link
	if hl == 32 {
		fi.Hash = hex.EncodeToString(v[n:])
	}
	return fi, nil
}
