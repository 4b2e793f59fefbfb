package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ferrysync/ferry/backends"
)

// Version is the format of the records and the header; a file of another
// version is rebuilt.
const Version = 1

const magic = "ferry-target-state"

// Buckets and header keys.
var (
	bucketMeta     = []byte("meta")
	bucketEntries  = []byte("entries")
	bucketInFlight = []byte("inflight")

	keyMagic    = []byte("magic")
	keyVersion  = []byte("version")
	keyTarget   = []byte("target")
	keyScope    = []byte("scope")
	keyClean    = []byte("clean")
	keyListedAt = []byte("listed-at")
)

// ErrInUse says another process holds the state file open.
var ErrInUse = errors.New("state file in use by another ferry")

// Options describe the store to open.
type Options struct {
	// Target names the target the store describes (its URL or root); a file
	// made for another target is foreign and rebuilt.
	Target string
	// Scope says what part of the target was listed (the exclude patterns);
	// a store of another scope is emptied and must be listed again.
	Scope string
	// BatchRecords and BatchEvery bound how many changes wait, and for how
	// long, before they are committed together; 0 means 2048 and 250ms.
	BatchRecords int
	BatchEvery   time.Duration
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
}

// Header is what the store says about itself.
type Header struct {
	Target string
	Scope  string
	// Clean is set when the last run ended with everything it did recorded;
	// it is cleared while a run is in progress.
	Clean bool
	// ListedAt is when the records were last rebuilt from a full listing;
	// zero when never (the records cannot be trusted then).
	ListedAt time.Time
}

// Store is an open state file. Its methods are safe for concurrent use.
type Store struct {
	db      *bolt.DB
	path    string
	opts    Options
	log     *slog.Logger
	rebuilt string

	mu        sync.Mutex
	pending   []mutation
	lastFlush time.Time
}

// DefaultDir returns $XDG_STATE_HOME/ferry, or ~/.local/state/ferry.
func DefaultDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "ferry"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("state directory: %w", err)
	}
	return filepath.Join(home, ".local", "state", "ferry"), nil
}

// FileName is the name of the state file of one job and target: readable
// parts of the job's name, and a hash of both so two targets never share.
func FileName(job, target string) string {
	sum := sha256.Sum256([]byte(job + "\x00" + target))
	var b strings.Builder
	for _, r := range job {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') && b.Len() < 40 {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		b.WriteString("job")
	}
	return b.String() + "-" + hex.EncodeToString(sum[:8]) + ".db"
}

// Open opens or creates the state file at path (its directory is created
// 0700, the file 0600). A file that cannot be opened as a store, is of
// another format, or was made for another target is moved aside (to
// path.bad-TIME) and a new empty store made; Rebuilt then says why. A file
// held by another process fails with ErrInUse after two seconds. Other
// errors are I/O errors of the state directory.
func Open(path string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.BatchRecords <= 0 {
		opts.BatchRecords = 2048
	}
	if opts.BatchEvery <= 0 {
		opts.BatchEvery = 250 * time.Millisecond
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	s := &Store{path: path, opts: opts, log: log, lastFlush: time.Now()}
	db, reason, err := openChecked(path, opts)
	if err != nil {
		return nil, err
	}
	if reason != "" {
		aside := fmt.Sprintf("%s.bad-%d", path, time.Now().UnixNano())
		if err := os.Rename(path, aside); err != nil {
			return nil, fmt.Errorf("move aside state file %s: %w", path, err)
		}
		log.Warn("state file not trusted: moved aside, the target will be listed", "path", path, "reason", reason, "moved-to", aside)
		s.rebuilt = reason
		db, reason, err = openChecked(path, opts)
		if err != nil {
			return nil, err
		}
		if reason != "" {
			return nil, fmt.Errorf("new state file %s: %s", path, reason)
		}
	}
	s.db = db
	return s, nil
}

// openChecked opens path and checks its header. A non-empty reason says the
// file is not a usable store (db is then nil and the file closed).
func openChecked(path string, opts Options) (db *bolt.DB, reason string, err error) {
	defer func() {
		// A damaged file can make the database library panic on read.
		if r := recover(); r != nil {
			if db != nil {
				db.Close()
			}
			db, reason, err = nil, fmt.Sprintf("unreadable: %v", r), nil
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, "", fmt.Errorf("%s: %w", path, ErrInUse)
	case err != nil:
		return nil, "cannot open: " + err.Error(), nil
	}
	reason, err = checkHeader(db, opts)
	if err != nil || reason != "" {
		db.Close()
		return nil, reason, err
	}
	return db, "", nil
}

// checkHeader initialises an empty file, and returns why a file is not ours.
// A store of another scope is emptied and left to be listed again.
func checkHeader(db *bolt.DB, opts Options) (string, error) {
	var reason string
	err := db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				reason = "not a ferry state file"
				return nil
			}
			return initBuckets(tx, opts)
		}
		switch {
		case string(meta.Get(keyMagic)) != magic:
			reason = "not a ferry state file"
		case !bytes.Equal(meta.Get(keyVersion), u64(Version)):
			reason = "another format version"
		case string(meta.Get(keyTarget)) != opts.Target:
			reason = fmt.Sprintf("made for target %q", meta.Get(keyTarget))
		case tx.Bucket(bucketEntries) == nil || tx.Bucket(bucketInFlight) == nil:
			reason = "buckets missing"
		}
		if reason != "" || string(meta.Get(keyScope)) == opts.Scope {
			return nil
		}
		return initBuckets(tx, opts)
	})
	if err != nil {
		return "", fmt.Errorf("state header: %w", err)
	}
	return reason, nil
}

// initBuckets makes the store empty and never listed.
func initBuckets(tx *bolt.Tx, opts Options) error {
	for _, b := range [][]byte{bucketMeta, bucketEntries, bucketInFlight} {
		if tx.Bucket(b) != nil {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		if _, err := tx.CreateBucket(b); err != nil {
			return err
		}
	}
	meta := tx.Bucket(bucketMeta)
	for k, v := range map[string][]byte{
		string(keyMagic): []byte(magic), string(keyVersion): u64(Version),
		string(keyTarget): []byte(opts.Target), string(keyScope): []byte(opts.Scope),
		string(keyClean): {0}, string(keyListedAt): u64(0),
	} {
		if err := meta.Put([]byte(k), v); err != nil {
			return err
		}
	}
	return nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// Path is the file the store lives in.
func (s *Store) Path() string { return s.path }

// Rebuilt says why the file found at Open was moved aside, or "".
func (s *Store) Rebuilt() string { return s.rebuilt }

// Close commits what is pending and closes the file. Safe to call once.
func (s *Store) Close() error {
	ferr := s.Flush()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close state %s: %w", s.path, err)
	}
	return ferr
}

// Unmap commits what is pending and closes and reopens the file. Reading
// every record maps the whole file into memory, where it stays resident
// while open; a run that has its records in hand calls Unmap so that those
// pages do not add to its peak memory. Not safe while another call is in
// progress. On failure the store is closed and unusable.
func (s *Store) Unmap() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushLocked(); err != nil {
		return err
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close state %s: %w", s.path, err)
	}
	db, err := bolt.Open(s.path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return fmt.Errorf("reopen state %s: %w", s.path, err)
	}
	s.db = db
	return nil
}

// Header reads the header. Errors are read errors of the file.
func (s *Store) Header() (Header, error) {
	var h Header
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		h.Target = string(meta.Get(keyTarget))
		h.Scope = string(meta.Get(keyScope))
		h.Clean = bytes.Equal(meta.Get(keyClean), []byte{1})
		if ns := getU64(meta.Get(keyListedAt)); ns != 0 {
			h.ListedAt = time.Unix(0, int64(ns))
		}
		return nil
	})
	if err != nil {
		return h, fmt.Errorf("read state header %s: %w", s.path, err)
	}
	return h, nil
}

// Reset empties the store and marks it never listed, for a store whose
// records turned out undecodable.
func (s *Store) Reset() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = nil
	return s.update(func(tx *bolt.Tx) error { return initBuckets(tx, s.opts) })
}

func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	if err := s.db.Update(fn); err != nil {
		return fmt.Errorf("write state %s: %w", s.path, err)
	}
	return nil
}

// ForEach calls fn for every record in the engine's path order, stopping at
// the first error fn returns. A record that cannot be decoded fails with
// ErrCorrupt. Records still pending are not seen: call Flush first.
func (s *Store) ForEach(fn func(backends.FileInfo) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		// Pages read are dropped as the walk goes (see Reader).
		defer s.dropPages(tx)
		n := 0
		return tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			if n++; n%dropEvery == 0 {
				s.dropPages(tx)
			}
			if err := checkKey(k); err != nil {
				return err
			}
			fi, err := decodeValue(decodeKey(k), v)
			if err != nil {
				return err
			}
			return fn(fi)
		})
	})
}

// Entries returns every record in the engine's path order (see ForEach).
func (s *Store) Entries() ([]backends.FileInfo, error) {
	var n int
	_ = s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketEntries).Stats().KeyN; return nil })
	out := make([]backends.FileInfo, 0, n)
	err := s.ForEach(func(fi backends.FileInfo) error { out = append(out, fi); return nil })
	return out, err
}

func clearBucket(tx *bolt.Tx, name []byte) error {
	if err := tx.DeleteBucket(name); err != nil {
		return err
	}
	_, err := tx.CreateBucket(name)
	return err
}
