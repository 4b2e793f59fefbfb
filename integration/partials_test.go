package integration

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/treecheck"
)

// TestStalePartialsLocal checks the retention of partial files that no
// upload will resume: older than the retention (a day by default) they are
// removed by the next sync, younger ones are kept for a concurrent or
// restarted run, and a partial that belongs to a pending upload ends up as
// the right final file.
func TestStalePartialsLocal(t *testing.T) {
	seed := testSeed(t)
	tmp := t.TempDir()
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	if err := treecheck.Generate(src, treecheck.Spec{Seed: seed, Dirs: 3, SmallFiles: 20, LargeFiles: 1, LargeMin: 1 << 20, LargeMax: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	if res := ferrybin.Run(t, time.Minute, "sync", src, dst); res.ExitCode != ferrybin.ExitOK {
		t.Fatal(res)
	}

	now := time.Now()
	plant := func(name string, age time.Duration, data []byte) string {
		t.Helper()
		p := filepath.Join(dst, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
		return filepath.Base(p)
	}
	old := plant(backends.PartialName("gone-old", 10, now), 48*time.Hour, []byte("old"))
	young := plant(backends.PartialName("gone-young", 10, now), time.Minute, []byte("young"))

	// A new source file with half of it already in its partial, the tail of
	// that partial garbage (as a killed concurrent write leaves it): the
	// sync must publish the right content, never the garbage.
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	mtime := now.Add(-time.Hour).Truncate(time.Microsecond)
	fp := filepath.Join(src, "resumed.bin")
	if err := os.WriteFile(fp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(fp, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(fp)
	if err != nil {
		t.Fatal(err)
	}
	half := slices.Clone(data[:len(data)/2])
	for i := len(half) - 1000; i < len(half); i++ {
		half[i] ^= 0xff
	}
	plant(backends.PartialName("resumed.bin", fi.Size(), fi.ModTime()), 0, half)

	if res := ferrybin.Run(t, time.Minute, "sync", src, dst); res.ExitCode != ferrybin.ExitOK {
		t.Fatal(res)
	}
	parts, err := treecheck.Partials(dst)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(parts, []string{young}) {
		t.Fatalf("partials after sync: %q; want only the young stale one %q (the old one %q removed, the resumed one published)", parts, young, old)
	}
	// The young partial is the one difference Compare ignores; the resumed
	// file must be whole despite the garbage in its partial.
	diff, err := treecheck.Compare(src, dst, localSyncChecks)
	if err != nil {
		t.Fatal(err)
	}
	if len(diff) > 0 {
		t.Fatalf("target differs from source: %q", diff)
	}
}
