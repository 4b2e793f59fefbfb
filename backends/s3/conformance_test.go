package s3

import (
	"testing"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/backendtest"
	"github.com/ferrysync/ferry/integration/s3server"
)

func TestConformance(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	backendtest.Run(t, func(t *testing.T) backends.Backend {
		b, err := New(t.Context(), testConfig(srv))
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return b
	}, backendtest.Options{
		// mtime is kept to the nanosecond in metadata; S3 has no symlinks
		// (the suite skips them for lack of a Symlinker).
		NoPartialFiles: true,
		LargeFileSize:  64 << 20,
	})
}

func TestConformanceDefaultPartSize(t *testing.T) {
	// The real part size and the single-PUT threshold that goes with it.
	srv := s3server.Start(t, s3server.Options{})
	c := testConfig(srv)
	c.PartSize = 0
	b := newTestBackend(t, c)
	data := backendtest.RandomBytes(20<<20+5, 21)
	res := backendtest.Upload(t, b, "f", data, backendtest.BaseTime)
	if res.Sent != int64(len(data)) {
		t.Errorf("sent %d, want %d", res.Sent, len(data))
	}
	backendtest.WantContent(t, b, "f", data)
	if fi := backendtest.Stat(t, b, "f"); !fi.ModTime.Equal(backendtest.BaseTime) {
		t.Errorf("mtime %v, want %v", fi.ModTime, backendtest.BaseTime)
	}
}
