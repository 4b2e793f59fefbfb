package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/backendtest"
)

// TestCommitOrder checks the durability order of one upload: a sync while
// the file is not yet published (its data), the rename, a second sync (the
// rename), and only then does Upload return.
func TestCommitOrder(t *testing.T) {
	b := newTestBackend(t, Options{})
	var events []string
	b.commit.sync = func(files, dirs []syncRef) error {
		_, err := b.root.Lstat("f")
		events = append(events, fmt.Sprintf("sync(published=%v files=%d dirs=%d)", err == nil, len(files), len(dirs)))
		return syncFilesystems(files, dirs)
	}
	backendtest.Upload(t, b, "f", []byte("data"), backendtest.BaseTime)
	events = append(events, "returned")
	want := []string{"sync(published=false files=1 dirs=0)", "sync(published=true files=0 dirs=1)", "returned"}
	if fmt.Sprint(events) != fmt.Sprint(want) {
		t.Errorf("events %v, want %v", events, want)
	}
}

// TestGroupCommitBatches runs many concurrent uploads and checks that they
// share filesystem syncs: one at a time would need two per file.
func TestGroupCommitBatches(t *testing.T) {
	b := newTestBackend(t, Options{})
	const workers, perWorker = 32, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				p := fmt.Sprintf("w%02d-%02d", w, i)
				if _, err := b.Upload(t.Context(), p, backendtest.NewBytes([]byte(p), backendtest.BaseTime)); err != nil {
					t.Errorf("Upload(%s): %v", p, err)
				}
			}
		})
	}
	wg.Wait()
	files := workers * perWorker
	rounds := b.commit.rounds.Load()
	t.Logf("%d uploads committed in %d filesystem syncs", files, rounds)
	if rounds >= int64(files) {
		t.Errorf("%d syncs for %d concurrent uploads: no batching", rounds, files)
	}
	if n := len(backendtest.List(t, b, "")); n != files {
		t.Errorf("%d files published, want %d", n, files)
	}
}

// TestCommitSyncFailure: when the data sync fails nothing is published and
// the partial stays for the next attempt, which resumes it.
func TestCommitSyncFailure(t *testing.T) {
	b := newTestBackend(t, Options{})
	errIO := errors.New("injected I/O error")
	b.commit.sync = func(_, _ []syncRef) error { return errIO }
	data := backendtest.RandomBytes(1<<20, 2)
	_, err := b.Upload(t.Context(), "f", backendtest.NewBytes(data, backendtest.BaseTime))
	if !errors.Is(err, errIO) || backends.IsPermanent(err) {
		t.Fatalf("upload with a failing sync: %v, want the retryable sync error", err)
	}
	backendtest.WantNotExist(t, b, "f")
	if _, err := b.root.Stat(backends.PartialName("f", int64(len(data)), backendtest.BaseTime)); err != nil {
		t.Fatalf("partial gone after a sync failure: %v", err)
	}
	b.commit.sync = syncFilesystems
	res := backendtest.Upload(t, b, "f", data, backendtest.BaseTime)
	if res.Resumed != int64(len(data)) {
		t.Errorf("retry resumed %d bytes, want all %d", res.Resumed, len(data))
	}
	backendtest.WantContent(t, b, "f", data)
}

// TestCommitWithdrawnOnCancel: an upload cancelled while its commit is
// queued returns context.Canceled and is never published, even though the
// round it would have joined completes later.
func TestCommitWithdrawnOnCancel(t *testing.T) {
	b := newTestBackend(t, Options{})
	release := make(chan struct{})
	entered := make(chan struct{}, 8)
	b.commit.sync = func(files, dirs []syncRef) error {
		entered <- struct{}{}
		<-release
		return syncFilesystems(files, dirs)
	}
	first := make(chan error, 1)
	go func() {
		_, err := b.Upload(t.Context(), "first", backendtest.NewBytes([]byte("1"), backendtest.BaseTime))
		first <- err
	}()
	<-entered // the leader is inside the first round's sync
	ctx, cancel := context.WithCancel(t.Context())
	second := make(chan error, 1)
	go func() {
		_, err := b.Upload(ctx, "second", backendtest.NewBytes([]byte("2"), backendtest.BaseTime))
		second <- err
	}()
	waitFor(t, func() bool {
		b.commit.mu.Lock()
		defer b.commit.mu.Unlock()
		return len(b.commit.queue) == 1
	})
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled upload returned %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first upload: %v", err)
	}
	backendtest.WantContent(t, b, "first", []byte("1"))
	backendtest.WantNotExist(t, b, "second")
	if _, err := b.root.Stat(backends.PartialName("second", 1, backendtest.BaseTime)); err != nil {
		t.Errorf("the cancelled upload's partial is gone: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMetadataChangesWaitForTheirDirectories: Mkdir, Rename and Symlink
// with fsync on return after a round that synced the directories whose
// entries they changed; an existing directory costs no round.
func TestMetadataChangesWaitForTheirDirectories(t *testing.T) {
	b := newTestBackend(t, Options{})
	var synced []string
	b.commit.sync = func(files, dirs []syncRef) error {
		for _, d := range dirs {
			synced = append(synced, d.key)
		}
		return syncFilesystems(files, dirs)
	}
	ctx := t.Context()
	tests := []struct {
		name string
		call func() error
		want []string
	}{
		{"MkdirNested", func() error { return b.Mkdir(ctx, "a/b/c") }, []string{"a/b", "a", ""}},
		{"MkdirExisting", func() error { return b.Mkdir(ctx, "a/b") }, nil},
		{"RenameAcrossDirs", func() error {
			if err := os.WriteFile(filepath.Join(b.name, "a/f"), nil, 0o644); err != nil {
				return err
			}
			return b.Rename(ctx, "a/f", "a/b/f")
		}, []string{"a/b", "a"}},
		{"Symlink", func() error { return b.Symlink(ctx, "x", "a/b/c/l") }, []string{"a/b/c"}},
	}
	for _, tt := range tests {
		synced = nil
		if err := tt.call(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if fmt.Sprint(synced) != fmt.Sprint(tt.want) {
			t.Errorf("%s synced %q, want %q", tt.name, synced, tt.want)
		}
	}
}
