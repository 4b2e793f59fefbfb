package sftp

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pkg/sftp"

	"github.com/ferrysync/ferry/backends"
)

// closeFailingWriter is the server's file writer with a close that fails
// for partial files, as a filesystem that reports a deferred write error
// only at close (NFS) does.
type closeFailingWriter struct {
	sftp.FileWriter
	fails atomic.Int64
}

func (w *closeFailingWriter) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	wa, err := w.FileWriter.Filewrite(r)
	if err != nil || !strings.Contains(r.Filepath, backends.PartialPrefix) {
		return wa, err
	}
	return &failingClose{WriterAt: wa, w: w}, nil
}

type failingClose struct {
	io.WriterAt
	w *closeFailingWriter
}

func (f *failingClose) Close() error {
	f.w.fails.Add(1)
	return errors.New("deferred write error")
}

// TestCloseFailureDoesNotPublish: a file whose close fails on the server
// never reaches its final name, not even for a moment before the error is
// seen.
func TestCloseFailureDoesNotPublish(t *testing.T) {
	e := newEnv(t, serverOpts{memFS: true})
	w := &closeFailingWriter{FileWriter: e.srv.memFS.FilePut}
	e.srv.memFS.FilePut = w
	cfg := e.config()
	cfg.Connections = 1
	cfg.Root = "/data"
	b := dial(t, cfg)
	ctx := context.Background()
	_, err := b.Upload(ctx, "f", newSource(100, 1))
	if err == nil {
		t.Fatal("upload whose close failed on the server succeeded")
	}
	if w.fails.Load() == 0 {
		t.Fatal("the server's close was never called: the test does not exercise a failing close")
	}
	if _, err := b.Stat(ctx, "f"); !errors.Is(err, backends.ErrNotExist) {
		t.Errorf("stat of the final name after a failed close: %v, want not found (published a file not known whole)", err)
	}
}
