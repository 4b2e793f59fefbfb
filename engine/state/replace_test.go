package state

import (
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ferrysync/ferry/backends"
)

// Replace makes the records those of a full listing taken at listedAt, and
// clears the in-flight set: the tests' way to fill a store, and the plain
// rewrite a Rebuild is checked against (runs rebuild through Rebuild). It commits in chunks: until the last one the
// store says it was never listed, so a crash in between is not trusted.
func (s *Store) Replace(entries []backends.FileInfo, listedAt time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushLocked(); err != nil {
		return err
	}
	err := s.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMeta).Put(keyListedAt, u64(0)); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketEntries); err != nil {
			return err
		}
		_, err := tx.CreateBucket(bucketEntries)
		return err
	})
	if err != nil {
		return err
	}
	const chunk = 50000
	for start := 0; start < len(entries); start += chunk {
		part := entries[start:min(start+chunk, len(entries))]
		err := s.update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketEntries)
			b.FillPercent = 0.9 // keys arrive in order
			for i := range part {
				if part[i].Path == "" {
					continue
				}
				if err := b.Put(encodeKey(part[i].Path), encodeValue(&part[i])); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return s.update(func(tx *bolt.Tx) error {
		if err := clearBucket(tx, bucketInFlight); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyListedAt, listedKey(listedAt))
	})
}
