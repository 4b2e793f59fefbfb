package integration

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestSourceChangesDuringSFTPUpload is TestSourceChangesDuringUpload's
// check for the changes it runs against local targets only, here over the
// real sshd, whose upload path (pipelined writes, a partial on the server)
// is another one: a file that shrinks, vanishes or is replaced by a rename
// while it is uploaded. The final name may only ever hold a complete
// version; at the end it holds the new one, or nothing for a vanished
// file, and no partial is left on the server.
func TestSourceChangesDuringSFTPUpload(t *testing.T) {
	const size = 12 << 20
	old := pattern(size, 1)
	cases := []struct {
		name   string
		change func(t *testing.T, p string) []byte // the new content, nil if gone
	}{
		{"shrinks", func(t *testing.T, p string) []byte {
			if err := os.Truncate(p, size/3); err != nil {
				t.Fatal(err)
			}
			return old[:size/3]
		}},
		{"vanishes", func(t *testing.T, p string) []byte {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
		{"replaced by rename", func(t *testing.T, p string) []byte {
			n := pattern(size, 3)
			if err := os.WriteFile(p+".new", n, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(p+".new", p); err != nil {
				t.Fatal(err)
			}
			return n
		}},
		{"changes behind the upload", func(t *testing.T, p string) []byte {
			return overwriteAt(t, p, 0, pattern(4096, 5), old)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newSFTPRig(t, sshd.Options{}, treecheck.Spec{})
			writeFiles(t, r.src, map[string]int{"small.txt": 100})
			p := filepath.Join(r.src, "big.bin")
			if err := os.WriteFile(p, old, 0o644); err != nil {
				t.Fatal(err)
			}
			past := time.Now().Add(-time.Hour)
			if err := os.Chtimes(p, past, past); err != nil {
				t.Fatal(err)
			}
			final := filepath.Join(r.dst, "big.bin")
			w := watchPublished(final, map[string][]byte{"old": old})
			proc := ferrybin.Start(t, append([]string{"-v"}, r.syncArgs(r.knownHosts, "--bwlimit", "6M")...)...)
			awaitPartial(t, proc, r.dst, "big.bin", 1<<20)
			newData := tc.change(t, p)
			if newData != nil {
				w.mu.Lock()
				w.allowed[sha256.Sum256(newData)] = "new"
				w.mu.Unlock()
			}
			res := proc.Wait()
			seen, torn := w.finish()
			if len(torn) > 0 {
				t.Fatalf("a torn file was published at %s while the source changed: %q\n%s", final, torn, res)
			}
			if res.ExitCode != ferrybin.ExitOK {
				t.Fatalf("exit %d, want 0 (a changed file is sent again, a vanished one reported): %s", res.ExitCode, res)
			}
			got, err := os.ReadFile(final)
			switch {
			case newData == nil:
				if err == nil {
					t.Errorf("the vanished file was published (%d bytes)", len(got))
				}
				if !strings.Contains(res.Stderr, "vanished") {
					t.Errorf("the vanished file is not reported:\n%s", res.Stderr)
				}
			case err != nil:
				t.Fatalf("the changed file is not on the target: %v\n%s", err, res)
			case !bytes.Equal(got, newData):
				t.Fatalf("target holds %d bytes, not the new %d-byte version (old version: %v)", len(got), len(newData), bytes.Equal(got, old))
			case !strings.Contains(res.Stderr, "source changed during upload"):
				t.Errorf("no \"source changed during upload\" in the log: the change was not seen\n%s", firstLines(res.Stderr, "big.bin", 10))
			}
			parts, err := treecheck.Partials(r.dst)
			if err != nil {
				t.Fatal(err)
			}
			if len(parts) > 0 {
				t.Errorf("partial files left on the server: %q", parts)
			}
			t.Logf("exit %d after %v; versions seen at the final name: %v", res.ExitCode, res.Duration.Round(time.Millisecond), seen)
		})
	}
}
