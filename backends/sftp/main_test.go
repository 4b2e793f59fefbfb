package sftp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// memSource is a backends.Source over bytes. reads counts the bytes read.
type memSource struct {
	data    []byte
	mtime   time.Time
	mode    fs.FileMode
	changed bool
	reads   atomic.Int64
}

func newSource(size int, seed uint64) *memSource {
	var key [32]byte
	key[0] = byte(seed)
	key[1] = byte(seed >> 8)
	b := make([]byte, size)
	rand.NewChaCha8(key).Read(b)
	return &memSource{data: b, mtime: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC), mode: 0o640}
}

func (s *memSource) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(s.data)) {
		return 0, io.EOF
	}
	n := copy(p, s.data[off:])
	s.reads.Add(int64(n))
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
func (s *memSource) Size() int64        { return int64(len(s.data)) }
func (s *memSource) ModTime() time.Time { return s.mtime }
func (s *memSource) Mode() fs.FileMode  { return s.mode }
func (s *memSource) Check() error {
	if s.changed {
		return backends.ErrSourceChanged
	}
	return nil
}

func dial(t testing.TB, cfg Config) *Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func readAll(t testing.TB, b *Backend, p string) []byte {
	t.Helper()
	r, err := b.Open(context.Background(), p, 0)
	if err != nil {
		t.Fatalf("Open %s: %v", p, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return got
}

func mustUpload(t testing.TB, b *Backend, p string, src *memSource) backends.UploadResult {
	t.Helper()
	res, err := b.Upload(context.Background(), p, src)
	if err != nil {
		t.Fatalf("Upload %s: %v", p, err)
	}
	if got := readAll(t, b, p); !bytes.Equal(got, src.data) {
		t.Fatalf("content of %s differs after upload (%d bytes, want %d)", p, len(got), len(src.data))
	}
	return res
}

func wantErr(t testing.TB, err error, class error) {
	t.Helper()
	if !errors.Is(err, class) {
		t.Fatalf("error %v does not wrap %v", err, class)
	}
}
