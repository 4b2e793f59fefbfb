package backendtest

import (
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// Bytes is a Source held in memory. Its fields may be changed between
// uploads, not during one.
type Bytes struct {
	Data  []byte
	MTime time.Time
	Perm  fs.FileMode
}

// NewBytes returns a Source of data with mtime and mode 0644.
func NewBytes(data []byte, mtime time.Time) *Bytes {
	return &Bytes{Data: data, MTime: mtime, Perm: 0o644}
}

// ReadAt reads from Data; it is safe for concurrent use.
func (s *Bytes) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= int64(len(s.Data)) {
		return 0, io.EOF
	}
	n := copy(p, s.Data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (s *Bytes) Size() int64        { return int64(len(s.Data)) }
func (s *Bytes) ModTime() time.Time { return s.MTime }
func (s *Bytes) Mode() fs.FileMode  { return s.Perm }
func (s *Bytes) Check() error       { return nil }

// FailAfter wraps src so that reading any byte at or past n fails with err;
// the bytes before n are delivered. It stands for a source disk that fails or
// a connection cut mid-way.
func FailAfter(src backends.Source, n int64, err error) backends.Source {
	return &failAfter{Source: src, n: n, err: err}
}

type failAfter struct {
	backends.Source
	n   int64
	err error
}

func (f *failAfter) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.n {
		return 0, f.err
	}
	if off+int64(len(p)) > f.n {
		m, err := f.Source.ReadAt(p[:f.n-off], off)
		if err != nil && err != io.EOF {
			return m, err
		}
		return m, f.err
	}
	return f.Source.ReadAt(p, off)
}

// Short wraps src so that it ends (io.EOF) after n bytes while Size still
// reports src's size: a file truncated while it was being read.
func Short(src backends.Source, n int64) backends.Source {
	return &short{Source: src, n: n}
}

type short struct {
	backends.Source
	n int64
}

func (s *short) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.n {
		return 0, io.EOF
	}
	if off+int64(len(p)) > s.n {
		m, _ := s.Source.ReadAt(p[:s.n-off], off)
		return m, io.EOF
	}
	return s.Source.ReadAt(p, off)
}

// Changed wraps src so that Check reports ErrSourceChanged: a file modified
// in place while it was being read, which reads fine but must not be
// published.
func Changed(src backends.Source) backends.Source { return changed{src} }

type changed struct{ backends.Source }

func (changed) Check() error {
	return fmt.Errorf("test source: mtime moved: %w", backends.ErrSourceChanged)
}

// OnRead wraps src so that fn is called with the offset before each ReadAt,
// e.g. to cancel a context once an upload is under way. fn must be safe for
// concurrent use if the backend reads concurrently.
func OnRead(src backends.Source, fn func(off int64)) backends.Source {
	return &onRead{Source: src, fn: fn}
}

type onRead struct {
	backends.Source
	fn func(off int64)
}

func (o *onRead) ReadAt(p []byte, off int64) (int, error) {
	o.fn(off)
	return o.Source.ReadAt(p, off)
}

// RandomBytes returns n pseudo-random bytes, the same for the same seed.
func RandomBytes(n int, seed uint64) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:8], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}
