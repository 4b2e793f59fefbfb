package sftp

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// flipOnce is a source whose first read over byte at returns that byte
// flipped: the upload sends a wrong byte, every later read (the verifier's)
// sees the true content, as when bytes were damaged on their way to the
// server's disk.
type flipOnce struct {
	*memSource
	at      int64
	flipped atomic.Bool
}

func (s *flipOnce) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.memSource.ReadAt(p, off)
	if off <= s.at && s.at < off+int64(n) && s.flipped.CompareAndSwap(false, true) {
		p[s.at-off] ^= 0xff
	}
	return n, err
}

// TestVerifyCatchesDamagedUpload checks that content verification verifies:
// with one byte damaged on the way, the hash and read-back checks must
// refuse to publish the file and drop the partial (so a retry starts over
// rather than resuming the damage), while the size-only check, which
// cannot see it, publishes. A verifier that only reports its name passes
// TestVerify but fails here.
func TestVerifyCatchesDamagedUpload(t *testing.T) {
	cases := []struct {
		name   string
		verify Verify
		noExec bool
		caught bool
	}{
		{"size only cannot see it", VerifyNone, false, false},
		{"hash by sha256sum", VerifyHash, false, true},
		{"hash falls back to read-back", VerifyHash, true, true},
		{"read-back", VerifyReadBack, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, serverOpts{noExec: tc.noExec})
			cfg := e.config()
			cfg.Verify = tc.verify
			b := dial(t, cfg)
			src := &flipOnce{memSource: newSource(300<<10, 4), at: 123457}
			_, err := b.Upload(context.Background(), "f", src)
			if !src.flipped.Load() {
				t.Fatal("the damaged byte was never read: the test proved nothing")
			}
			final := filepath.Join(e.root, "f")
			if !tc.caught {
				if err != nil {
					t.Fatalf("size-only upload: %v", err)
				}
				if got, _ := os.ReadFile(final); len(got) != len(src.data) || got[src.at] == src.data[src.at] {
					t.Fatalf("size-only upload did not publish the damaged byte: the fault was not injected")
				}
				return
			}
			if err == nil {
				t.Fatalf("upload with %s verification published a damaged file", tc.verify)
			}
			if !strings.Contains(err.Error(), "differs") {
				t.Errorf("error does not say the content differs: %v", err)
			}
			if _, serr := os.Lstat(final); serr == nil {
				t.Errorf("a damaged file was published at %s", final)
			}
			ents, _ := os.ReadDir(e.root)
			if len(ents) != 0 {
				t.Errorf("root holds %v after a failed verification, want nothing (partial dropped)", ents)
			}
			t.Logf("refused: %v", err)
		})
	}
}
