package state

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrysync/ferry/backends"
)

// Reader hands out the records one at a time in the engine's path order,
// from one read transaction, so that a run can merge them with a scan of
// the source without holding them all. It is not safe for concurrent use,
// and the store must not be written (nor Unmap called) until it is closed.
type Reader struct {
	s       *Store
	tx      *bolt.Tx
	c       *bolt.Cursor
	k, v    []byte
	started bool
	read    int // records since the pages behind were last dropped
}

// dropEvery is how many records a Reader reads between dropping the
// pages of the file it has read from its memory: about 1 MiB of file.
const dropEvery = 32 << 10

// Reader starts reading the records. Records still pending are not seen:
// call Flush first. Errors are read errors of the file.
func (s *Store) Reader() (*Reader, error) {
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", s.path, err)
	}
	return &Reader{s: s, tx: tx, c: tx.Bucket(bucketEntries).Cursor()}, nil
}

// Next moves to the next record and reports whether there is one.
func (r *Reader) Next() bool {
	if r.c == nil {
		return false
	}
	if r.started {
		r.k, r.v = r.c.Next()
	} else {
		r.k, r.v = r.c.First()
		r.started = true
	}
	if r.read++; r.read >= dropEvery {
		r.read = 0
		r.s.dropPages(r.tx)
	}
	if r.k == nil {
		r.c = nil
		return false
	}
	return true
}

// AppendPath appends the current record's path to b.
func (r *Reader) AppendPath(b []byte) []byte {
	for _, c := range r.k {
		if c == 0 {
			c = '/'
		}
		b = append(b, c)
	}
	return b
}

// Meta decodes the current record without its path and hash, which
// allocates nothing but a symlink's target. A record that cannot be
// decoded fails with ErrCorrupt.
func (r *Reader) Meta() (backends.FileInfo, error) {
	return decodeMeta(r.k, r.v)
}

// Info decodes the whole current record (see Meta).
func (r *Reader) Info() (backends.FileInfo, error) {
	if err := checkKey(r.k); err != nil {
		return backends.FileInfo{}, err
	}
	return decodeValue(decodeKey(r.k), r.v)
}

// Close ends the read and drops the pages read from memory.
func (r *Reader) Close() error {
	r.s.dropPages(r.tx)
	r.c = nil
	if err := r.tx.Rollback(); err != nil {
		return fmt.Errorf("read state %s: %w", r.s.path, err)
	}
	return nil
}

// decodeMeta is decodeValue without the path and the hash.
func decodeMeta(k, v []byte) (backends.FileInfo, error) {
	var fi backends.FileInfo
	if err := checkKey(k); err != nil {
		return fi, err
	}
	bad := func(what string) (backends.FileInfo, error) {
		return backends.FileInfo{}, fmt.Errorf("record %q: bad %s: %w", decodeKey(k), what, ErrCorrupt)
	}
	var ok bool
	var mode, nsec, ll uint64
	var sec int64
	if mode, v, ok = uvarint(v); !ok || mode > 1<<32-1 {
		return bad("mode")
	}
	if fi.Size, v, ok = varint(v); !ok || fi.Size < 0 {
		return bad("size")
	}
	if sec, v, ok = varint(v); !ok {
		return bad("mtime")
	}
	if nsec, v, ok = uvarint(v); !ok || nsec >= 1e9 {
		return bad("mtime")
	}
	if ll, v, ok = uvarint(v); !ok || ll > uint64(len(v)) {
		return bad("link target")
	}
	if ll > 0 {
		fi.LinkTarget = string(v[:ll])
	}
	v = v[ll:]
	hl, v, ok := uvarint(v)
	if !ok || hl != uint64(len(v)) || (hl != 0 && hl != 32) {
		return bad("hash")
	}
	fi.Mode = fs.FileMode(mode)
	fi.ModTime = time.Unix(sec, int64(nsec))
	return fi, nil
}

// dropPages tells the kernel that the pages of the file mapped by tx are
// not needed now: a read-only shared mapping loses nothing, and a page
// touched again is mapped back from the page cache. Without it, reading a
// million records leaves the whole file resident in the process.
func (s *Store) dropPages(tx *bolt.Tx) {
	info := s.db.Info()
	if info.Data == 0 || tx.Size() <= 0 {
		return
	}
	dropMapped(info.Data, tx.Size())
}

func uvarint(b []byte) (uint64, []byte, bool) {
	x, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, b, false
	}
	return x, b[n:], true
}

func varint(b []byte) (int64, []byte, bool) {
	x, n := binary.Varint(b)
	if n <= 0 {
		return 0, b, false
	}
	return x, b[n:], true
}
