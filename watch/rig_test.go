package watch

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitLimit bounds every wait for a hint; generous for slow, raced runs.
const waitLimit = 15 * time.Second

type gotHint struct {
	Hint
	at      time.Time
	content string // the file's content when the hint was taken, if asked for
	exists  bool
}

// rig runs a Watcher over a fresh directory and records every hint.
type rig struct {
	t      *testing.T
	root   string
	w      *Watcher
	logs   *syncBuffer
	cancel context.CancelFunc
	runErr chan error

	mu          sync.Mutex
	got         []gotHint
	readContent bool
	barrierN    int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newRig(t *testing.T, opts Options) *rig {
	t.Helper()
	return newRigAt(t, t.TempDir(), opts, false)
}

func newRigAt(t *testing.T, root string, opts Options, readContent bool) *rig {
	t.Helper()
	logs := &syncBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w, err := New(root, opts)
	if err != nil {
		t.Fatalf("New(%s): %v", root, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{t: t, root: root, w: w, logs: logs, cancel: cancel, runErr: make(chan error, 1), readContent: readContent}
	go func() { r.runErr <- w.Run(ctx) }()
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for batch := range w.Hints() {
			now := time.Now()
			r.mu.Lock()
			for _, h := range batch {
				g := gotHint{Hint: h, at: now}
				if r.readContent && !h.Rescan {
					b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(h.Path)))
					g.content, g.exists = string(b), err == nil
				}
				r.got = append(r.got, g)
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-r.runErr; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		<-collected
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return r
}

func (r *rig) path(rel string) string { return filepath.Join(r.root, filepath.FromSlash(rel)) }

func (r *rig) write(rel, content string) {
	r.t.Helper()
	if err := os.WriteFile(r.path(rel), []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) mkdirAll(rel string) {
	r.t.Helper()
	if err := os.MkdirAll(r.path(rel), 0o755); err != nil {
		r.t.Fatal(err)
	}
}

// hints returns a copy of everything seen so far.
func (r *rig) hints() []gotHint {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]gotHint(nil), r.got...)
}

// since returns the hints seen from index i on, and the next index.
func (r *rig) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func (r *rig) since(i int) []gotHint { return r.hints()[i:] }

// waitFor waits until every path has been hinted at or after index from,
// and fails the test after waitLimit.
func (r *rig) waitFor(from int, paths ...string) []gotHint {
	r.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got := r.since(from)
		seen := map[string]bool{}
		for _, h := range got {
			seen[h.Path] = true
		}
		var missing []string
		for _, p := range paths {
			if !seen[p] {
				missing = append(missing, p)
			}
		}
		if len(missing) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no hint within %v for %q; got %v", waitLimit, missing, pathsOf(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitRescan waits for a rescan hint of rel at or after index from.
func (r *rig) waitRescan(from int, rel string) {
	r.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		for _, h := range r.since(from) {
			if h.Rescan && h.Path == rel {
				return
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no rescan hint for %q within %v; got %v", rel, waitLimit, pathsOf(r.since(from)))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// barrier writes a fresh marker file and waits for its hint. Events are
// handled in order and the marker needs the longest quiet time of any
// change made before it, so any hint owed for an earlier change has been
// delivered once the marker's has: this is how tests check that something
// did not produce a hint, without sleeping.
func (r *rig) barrier(from int) []gotHint {
	r.t.Helper()
	r.barrierN++
	name := "zz-marker-" + strings.Repeat("m", r.barrierN)
	r.write(name, "m")
	return r.waitFor(from, name)
}

func pathsOf(hs []gotHint) []string {
	var out []string
	for _, h := range hs {
		p := h.Path
		if h.Rescan {
			p += "(rescan)"
		}
		out = append(out, p)
	}
	return out
}

func countPath(hs []gotHint, p string) int {
	n := 0
	for _, h := range hs {
		if h.Path == p && !h.Rescan {
			n++
		}
	}
	return n
}
