package sftp

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestManySmallUploadsOneSession runs as many batched uploads at once as
// the engine does against an SFTP target, of sizes from empty to one whole
// batch, through one connection: the steps queued from the session's
// reader and the requests held back while answers are due must leave none
// behind (the uploads would hang) and mix no bytes between files.
func TestManySmallUploadsOneSession(t *testing.T) {
	e := newEnv(t, serverOpts{})
	cfg := e.config()
	cfg.Connections = 1
	b := dial(t, cfg)
	sizes := []int{0, 1, 100, 4 << 10, DefaultChunkSize, DefaultChunkSize + 1, batchChunks * DefaultChunkSize}
	const files = 600
	srcs := make([]*memSource, files)
	for i := range srcs {
		srcs[i] = newSource(sizes[i%len(sizes)], uint64(i))
	}
	sem := make(chan struct{}, b.SmallFileConcurrency())
	var wg sync.WaitGroup
	for i, src := range srcs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			res, err := b.Upload(context.Background(), fmt.Sprintf("d%d/f%d", i%7, i), src)
			if err != nil {
				t.Errorf("upload %d (%d bytes): %v", i, src.Size(), err)
				return
			}
			if res.Sent != src.Size() {
				t.Errorf("upload %d sent %d of %d bytes", i, res.Sent, src.Size())
			}
		})
	}
	wg.Wait()
	for i, src := range srcs {
		full := filepath.Join(e.root, fmt.Sprintf("d%d/f%d", i%7, i))
		got, err := os.ReadFile(full)
		if err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
		if !bytes.Equal(got, src.data) {
			t.Fatalf("file %d (%d bytes) holds other bytes than its source", i, src.Size())
		}
		fi, _ := os.Stat(full)
		if fi.Mode().Perm() != src.Mode() || !fi.ModTime().Equal(src.ModTime()) {
			t.Errorf("file %d: mode %v mtime %v, want %v %v", i, fi.Mode().Perm(), fi.ModTime(), src.Mode(), src.ModTime())
		}
	}
	if ents, _ := filepath.Glob(filepath.Join(e.root, "d*", ".ferry*")); len(ents) > 0 {
		t.Errorf("partials left behind: %v", ents)
	}
}
