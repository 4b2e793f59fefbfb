package engine

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// hintedBackend is the fake target naming its own default for
// ExecOptions.SmallFileConcurrency.
type hintedBackend struct {
	*fakeBackend
	n int
}

func (h hintedBackend) SmallFileConcurrency() int { return h.n }

// TestExecuteTakesTargetSmallFileConcurrency: a target's own default bounds
// the small uploads in flight, below or above the engine's, and an explicit
// option still wins over it.
func TestExecuteTakesTargetSmallFileConcurrency(t *testing.T) {
	for _, tc := range []struct {
		name            string
		hint, opt       int
		atMost, atLeast int
	}{
		{"target's default below the engine's", 3, 0, 3, 2},
		{"target's default above the engine's", DefaultSmallFileConcurrency + 16, 0, DefaultSmallFileConcurrency + 16, DefaultSmallFileConcurrency + 1},
		{"the option wins over the target's", 40, 2, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			var ops []Op
			for i := range 60 {
				ops = append(ops, uploadOp(writeSrc(t, root, fmt.Sprintf("f%02d", i), []byte("s"))))
			}
			var mu sync.Mutex
			active, peak := 0, 0
			fb := newFake()
			fb.beforeUpload = func(ctx context.Context, path string, src backends.Source, attempt int) error {
				mu.Lock()
				active++
				peak = max(peak, active)
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
				mu.Lock()
				active--
				mu.Unlock()
				return nil
			}
			rep := Execute(context.Background(), Plan{Ops: ops}, root, hintedBackend{fb, tc.hint}, ExecOptions{SmallFileConcurrency: tc.opt})
			if rep.Uploaded != 60 {
				t.Fatalf("uploaded %d, problems %v", rep.Uploaded, rep.Problems)
			}
			if peak > tc.atMost || peak < tc.atLeast {
				t.Errorf("peak small uploads in flight %d, want %d to %d", peak, tc.atLeast, tc.atMost)
			}
		})
	}
}
