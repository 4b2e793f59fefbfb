package state

import (
	"bytes"
	"io/fs"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrysync/ferry/backends"
)

type mutKind int

const (
	mutPut     mutKind = iota // fi is now at fi.Path
	mutDelete                 // path and all under it are gone
	mutRename                 // path and all under it moved to to
	mutModTime                // path's mtime is t
	mutMode                   // path's permission bits are perm
	mutSettled                // path was checked: only leaves the in-flight set
	mutPutNew                 // fi is at fi.Path, unless a record of the same type is there
)

type mutation struct {
	kind mutKind
	path string
	to   string
	fi   backends.FileInfo
	t    time.Time
	perm fs.FileMode
}

// Put records fi as present on the target. Call it only after the
// operation that published fi returned: the record may be committed at
// once. It leaves fi.Path's in-flight mark.
func (s *Store) Put(fi backends.FileInfo) error {
	return s.add(mutation{kind: mutPut, path: fi.Path, fi: fi})
}

// PutNew records fi like Put, but keeps a record already there: for a
// directory made where one may have existed (a mkdir of parents), whose
// existing record knows its mtime and mode.
func (s *Store) PutNew(fi backends.FileInfo) error {
	return s.add(mutation{kind: mutPutNew, path: fi.Path, fi: fi})
}

// Delete records that path, and everything under it, is gone.
func (s *Store) Delete(path string) error { return s.add(mutation{kind: mutDelete, path: path}) }

// Rename records that from, with everything under it, moved to to,
// replacing what was at to.
func (s *Store) Rename(from, to string) error {
	return s.add(mutation{kind: mutRename, path: from, to: to})
}

// SetModTime records a new mtime of a recorded path; unknown paths are
// left alone.
func (s *Store) SetModTime(path string, t time.Time) error {
	return s.add(mutation{kind: mutModTime, path: path, t: t})
}

// SetMode records new permission bits of a recorded path.
func (s *Store) SetMode(path string, perm fs.FileMode) error {
	return s.add(mutation{kind: mutMode, path: path, perm: perm})
}

// add queues m and commits the queue once it is long or old enough. The
// error is a failed commit; the changes it held are then lost, which the
// in-flight set makes safe.
func (s *Store) add(m mutation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(s.pending, m)
	if len(s.pending) >= s.opts.BatchRecords || time.Since(s.lastFlush) >= s.opts.BatchEvery {
		return s.flushLocked()
	}
	return nil
}

// Flush commits the queued changes in one transaction.
func (s *Store) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked()
}

func (s *Store) flushLocked() error {
	s.lastFlush = time.Now()
	if len(s.pending) == 0 {
		return nil
	}
	muts := s.pending
	s.pending = nil
	return s.update(func(tx *bolt.Tx) error {
		ents, fl := tx.Bucket(bucketEntries), tx.Bucket(bucketInFlight)
		for _, m := range muts {
			if err := apply(ents, m); err != nil {
				return err
			}
			if err := fl.Delete(encodeKey(m.path)); err != nil {
				return err
			}
			if m.kind == mutRename {
				if err := fl.Delete(encodeKey(m.to)); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func apply(b *bolt.Bucket, m mutation) error {
	key := encodeKey(m.path)
	switch m.kind {
	case mutPut:
		return b.Put(key, encodeValue(&m.fi))
	case mutPutNew:
		if v := b.Get(key); v != nil {
			if old, err := decodeValue(m.path, v); err == nil && old.Mode.Type() == m.fi.Mode.Type() {
				return nil
			}
		}
		return b.Put(key, encodeValue(&m.fi))
	case mutDelete:
		if err := b.Delete(key); err != nil {
			return err
		}
		return deletePrefix(b, subtreePrefix(m.path))
	case mutRename:
		return renameTree(b, m.path, m.to)
	case mutModTime, mutMode:
		v := b.Get(key)
		if v == nil {
			return nil
		}
		fi, err := decodeValue(m.path, v)
		if err != nil {
			return err
		}
		if m.kind == mutModTime {
			fi.ModTime = m.t
		} else {
			fi.Mode = fi.Mode&^fs.ModePerm | m.perm.Perm()
		}
		return b.Put(key, encodeValue(&fi))
	}
	return nil
}

func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// renameTree moves the record of from and its subtree under to, dropping
// what to held before.
func renameTree(b *bolt.Bucket, from, to string) error {
	type kv struct{ k, v []byte }
	var moved []kv
	fk, tk := encodeKey(from), encodeKey(to)
	if v := b.Get(fk); v != nil {
		moved = append(moved, kv{tk, bytes.Clone(v)})
	}
	prefix := subtreePrefix(from)
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		nk := append(append(bytes.Clone(tk), 0), k[len(prefix):]...)
		moved = append(moved, kv{nk, bytes.Clone(v)})
	}
	for _, p := range [][]byte{fk, tk} {
		if err := b.Delete(p); err != nil {
			return err
		}
	}
	if err := deletePrefix(b, prefix); err != nil {
		return err
	}
	if err := deletePrefix(b, append(bytes.Clone(tk), 0)); err != nil {
		return err
	}
	for _, m := range moved {
		// Paths stay in the key encoding; values name no path.
		if err := b.Put(m.k, m.v); err != nil {
			return err
		}
	}
	return nil
}

// Begin marks a run in progress: the store is no longer clean, and paths
// (those the run's plan may touch) are added to the in-flight set, in one
// committed transaction, before any of them is touched.
func (s *Store) Begin(paths []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushLocked(); err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put(keyClean, []byte{0}); err != nil {
			return err
		}
		fl := tx.Bucket(bucketInFlight)
		for _, p := range paths {
			if err := fl.Put(encodeKey(p), nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// InFlight returns the paths touched by a run that did not record their
// outcome: after a crash, what the target holds at these (and under them)
// is unknown.
func (s *Store) InFlight() ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketInFlight).ForEach(func(k, _ []byte) error {
			out = append(out, decodeKey(k))
			return nil
		})
	})
	return out, err
}

// Settled removes path from the in-flight set without changing its record.
func (s *Store) Settled(path string) error { return s.add(mutation{kind: mutSettled, path: path}) }

// End commits what is pending and, when clean, marks the store clean and
// clears the in-flight set: everything the run did is recorded.
func (s *Store) End(clean bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushLocked(); err != nil {
		return err
	}
	if !clean {
		return nil
	}
	return s.update(func(tx *bolt.Tx) error {
		if err := clearBucket(tx, bucketInFlight); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyClean, []byte{1})
	})
}
