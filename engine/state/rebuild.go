package state

import (
	"bytes"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrysync/ferry/backends"
)

// Rebuild rewrites the records from a full listing handed to it one entry
// at a time, in the engine's path order, without holding the listing or
// the records: it walks the old records beside the listing, tells Diff
// how each path compares, and writes only what changed, in batches. Until
// Finish commits, the store says it was never listed, so a crash or an
// abandoned rebuild leaves a store that is not trusted. While a Rebuild is
// in progress nothing else may use the store; it is not safe for
// concurrent use.
type Rebuild struct {
	// Diff, when set, is called for every path of the listing or of the
	// old records: listed is nil for a record the listing lacks, old nil
	// for a listed path with no record (or one that could not be decoded:
	// oldErr is then ErrCorrupt).
	Diff func(listed, old *backends.FileInfo, oldErr error)

	s       *Store
	old     []kv // a window of the old records, read ahead of the listing
	pos     int
	lastKey []byte // last old key read; nil before the first read
	oldDone bool
	pending []kv // writes; v nil deletes
}

type kv struct{ k, v []byte }

// rebuildChunk is how many old records are read per read transaction, and
// how many writes wait before they are committed together.
var rebuildChunk = 16 << 10

// Rebuild starts a rebuild: it commits what is pending and marks the store
// never listed. Errors are write errors of the file.
func (s *Store) Rebuild() (*Rebuild, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushLocked(); err != nil {
		return nil, err
	}
	err := s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyListedAt, u64(0)) })
	if err != nil {
		return nil, err
	}
	return &Rebuild{s: s}, nil
}

// Add takes the next entry of the listing, whose path must sort after the
// previous one's; an entry without a path is ignored. Errors are read or
// write errors of the file; the rebuild cannot go on after one.
func (r *Rebuild) Add(fi backends.FileInfo) error {
	if fi.Path == "" {
		return nil
	}
	key := encodeKey(fi.Path)
merge:
	for {
		cur, err := r.peek()
		if err != nil {
			return err
		}
		c := 1
		if cur != nil {
			c = bytes.Compare(cur.k, key)
		}
		switch {
		case c < 0:
			r.gone(cur)
			continue
		case c == 0:
			r.pos++
			old, oerr := decodeValue(fi.Path, cur.v)
			if r.Diff != nil {
				if oerr != nil {
					r.Diff(&fi, nil, oerr)
				} else {
					r.Diff(&fi, &old, nil)
				}
			}
			if v := encodeValue(&fi); !bytes.Equal(v, cur.v) {
				r.pending = append(r.pending, kv{cur.k, v})
			}
		default:
			if r.Diff != nil {
				r.Diff(&fi, nil, nil)
			}
			r.pending = append(r.pending, kv{key, encodeValue(&fi)})
		}
		break merge
	}
	if len(r.pending) >= rebuildChunk {
		return r.flush()
	}
	return nil
}

// gone handles an old record the listing lacks.
func (r *Rebuild) gone(cur *kv) {
	r.pos++
	if r.Diff != nil {
		old, err := decodeValue(decodeKey(cur.k), cur.v)
		if kerr := checkKey(cur.k); kerr != nil {
			err = kerr
		}
		if err != nil {
			r.Diff(nil, nil, err)
		} else {
			r.Diff(nil, &old, nil)
		}
	}
	r.pending = append(r.pending, kv{cur.k, nil})
}

// peek returns the next old record not yet matched, or nil past the last.
// Writes pending or committed are all at keys up to the last one read, so
// reading on from there sees only old records.
func (r *Rebuild) peek() (*kv, error) {
	if r.pos < len(r.old) {
		return &r.old[r.pos], nil
	}
	if r.oldDone {
		return nil, nil
	}
	r.old, r.pos = r.old[:0], 0
	err := r.s.db.View(func(tx *bolt.Tx) error {
		defer r.s.dropPages(tx)
		c := tx.Bucket(bucketEntries).Cursor()
		var k, v []byte
		if r.lastKey == nil {
			k, v = c.First()
		} else if k, v = c.Seek(r.lastKey); k != nil && bytes.Equal(k, r.lastKey) {
			k, v = c.Next()
		}
		for ; k != nil && len(r.old) < rebuildChunk; k, v = c.Next() {
			r.old = append(r.old, kv{bytes.Clone(k), bytes.Clone(v)})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", r.s.path, err)
	}
	if len(r.old) == 0 {
		r.oldDone = true
		return nil, nil
	}
	r.lastKey = r.old[len(r.old)-1].k
	return &r.old[0], nil
}

// flush commits the pending writes in one transaction.
func (r *Rebuild) flush() error {
	if len(r.pending) == 0 {
		return nil
	}
	err := r.s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		b.FillPercent = 0.9 // keys arrive in order
		for _, w := range r.pending {
			var err error
			if w.v == nil {
				err = b.Delete(w.k)
			} else {
				err = b.Put(w.k, w.v)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	r.pending = r.pending[:0]
	if err == nil {
		// The pages the write read stay mapped; drop them as a read does.
		_ = r.s.db.View(func(tx *bolt.Tx) error { r.s.dropPages(tx); return nil })
	}
	return err
}

// Finish ends the listing: the records it lacked are deleted, the rest is
// committed and the in-flight set cleared, and the store is marked listed
// at listedAt. A zero listedAt (an incomplete listing) leaves the store
// not trusted. Errors are read or write errors of the file; the store is
// then not trusted either.
func (r *Rebuild) Finish(listedAt time.Time) error {
	for {
		cur, err := r.peek()
		if err != nil {
			return err
		}
		if cur == nil {
			break
		}
		r.gone(cur)
		if len(r.pending) >= rebuildChunk {
			if err := r.flush(); err != nil {
				return err
			}
		}
	}
	if err := r.flush(); err != nil {
		return err
	}
	r.old = nil
	return r.s.update(func(tx *bolt.Tx) error {
		if err := clearBucket(tx, bucketInFlight); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyListedAt, listedKey(listedAt))
	})
}

// listedKey encodes a listing time; the zero time is 0, never listed.
func listedKey(t time.Time) []byte {
	if t.IsZero() {
		return u64(0)
	}
	return u64(uint64(t.UnixNano()))
}
