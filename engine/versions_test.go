package engine

import (
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// readTree returns every regular file under root with its content, by
// slash path.
func readTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// backupRun runs one backup with versions of src to the local directory
// dst at the given time.
func backupRun(t *testing.T, src, dst string, now time.Time, keep Keep) TargetResult {
	t.Helper()
	res, err := SyncTargets(context.Background(), FanOutOptions{
		Source: src, Mode: Backup, MaxDelete: -1,
		Versions: &Versions{Dir: ".v", Keep: keep, Now: func() time.Time { return now }},
		Targets:  []FanOutTarget{{Name: "t", Target: localTarget(t, dst)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if r.Err != nil || len(r.Report.Problems) > 0 {
		t.Fatalf("run at %v: err %v, problems %v", now, r.Err, r.Report.Problems)
	}
	return r
}

func TestBackupVersionsThreeRuns(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	t1 := time.Date(2026, 11, 25, 16, 15, 0, 0, time.UTC)
	t2, t3 := t1.Add(time.Hour), t1.Add(2*time.Hour)
	mt := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	mkfile(t, src, "a.txt", "a1", mt)
	mkfile(t, src, "c.txt", "c1", mt)
	mkfile(t, src, "d/b.txt", "b1", mt)
	mkfile(t, src, "d/e/f.txt", "f1", mt)
	mkfile(t, src, "same.txt", "same", mt)

	r1 := backupRun(t, src, dst, t1, Keep{})
	if r1.Versioned != 0 || r1.Report.Uploaded != 5 {
		t.Fatalf("first run: versioned %d, uploaded %d; want 0, 5", r1.Versioned, r1.Report.Uploaded)
	}

	// Run 2: a changed (same size, newer mtime), c and the directory d deleted.
	mkfile(t, src, "a.txt", "a2", mt.Add(time.Hour))
	os.Remove(filepath.Join(src, "c.txt"))
	os.RemoveAll(filepath.Join(src, "d"))
	r2 := backupRun(t, src, dst, t2, Keep{})
	if r2.VersionDir != ".v/2026-11-25T171500Z" {
		t.Errorf("run 2 version folder %q", r2.VersionDir)
	}
	if r2.Versioned != 3 { // a.txt, c.txt, and d in one move
		t.Errorf("run 2 moved %d versions, want 3", r2.Versioned)
	}

	// Run 3: a changed again (new size), c back with new content, d/b back.
	mkfile(t, src, "a.txt", "a3-longer", mt.Add(2*time.Hour))
	mkfile(t, src, "c.txt", "c3", mt.Add(2*time.Hour))
	mkfile(t, src, "d/b.txt", "b3", mt.Add(2*time.Hour))
	r3 := backupRun(t, src, dst, t3, Keep{})
	if r3.Versioned != 1 {
		t.Errorf("run 3 moved %d versions, want 1 (a.txt)", r3.Versioned)
	}

	got := readTree(t, dst)
	want := map[string]string{
		"a.txt": "a3-longer", "c.txt": "c3", "d/b.txt": "b3", "same.txt": "same",
		".v/2026-11-25T171500Z/a.txt":     "a1",
		".v/2026-11-25T171500Z/c.txt":     "c1",
		".v/2026-11-25T171500Z/d/b.txt":   "b1",
		".v/2026-11-25T171500Z/d/e/f.txt": "f1",
		".v/2026-11-25T181500Z/a.txt":     "a2",
	}
	if !maps.Equal(got, want) {
		t.Errorf("target after three runs:\n got %v\nwant %v", got, want)
	}
	// Nothing lost: every content the source ever had is somewhere.
	have := map[string]bool{}
	for _, c := range got {
		have[c] = true
	}
	for _, c := range []string{"a1", "a2", "a3-longer", "c1", "c3", "b1", "b3", "f1", "same"} {
		if !have[c] {
			t.Errorf("content %q was lost", c)
		}
	}
	// A fourth run with nothing changed moves nothing and plans nothing.
	r4 := backupRun(t, src, dst, t3.Add(time.Hour), Keep{})
	if r4.Versioned != 0 || len(r4.Report.Plan.Ops) != 0 {
		t.Errorf("no-op run: versioned %d, ops %v", r4.Versioned, r4.Report.Plan.Ops)
	}
}

func TestBackupVersionsSameSecondGetTheirOwnFolders(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	now := time.Date(2026, 11, 25, 16, 15, 0, 0, time.UTC)
	mt := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, c := range []string{"x0", "x1", "x2", "x3"} {
		mkfile(t, src, "f", c, mt.Add(time.Duration(i)*time.Minute))
		backupRun(t, src, dst, now, Keep{})
	}
	want := map[string]string{"f": "x3",
		".v/2026-11-25T161500Z/f": "x0", ".v/2026-11-25T161501Z/f": "x1", ".v/2026-11-25T161502Z/f": "x2"}
	if got := readTree(t, dst); !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestBackupVersionsPrune(t *testing.T) {
	mt := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	t0 := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		keep Keep
		want []string // version folders left after five runs an hour apart
	}{
		{"keep all", Keep{}, []string{"2026-11-25T010000Z", "2026-11-25T020000Z", "2026-11-25T030000Z", "2026-11-25T040000Z"}},
		{"count 2", Keep{Count: 2}, []string{"2026-11-25T030000Z", "2026-11-25T040000Z"}},
		{"count 1", Keep{Count: 1}, []string{"2026-11-25T040000Z"}},
		{"count above what exists", Keep{Count: 9}, []string{"2026-11-25T010000Z", "2026-11-25T020000Z", "2026-11-25T030000Z", "2026-11-25T040000Z"}},
		{"age 90m", Keep{Age: 90 * time.Minute}, []string{"2026-11-25T030000Z", "2026-11-25T040000Z"}},
		{"age exactly 1h keeps the one an hour old", Keep{Age: time.Hour}, []string{"2026-11-25T030000Z", "2026-11-25T040000Z"}},
		{"age 30m", Keep{Age: 30 * time.Minute}, []string{"2026-11-25T040000Z"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := t.TempDir(), t.TempDir()
			for i := range 5 {
				mkfile(t, src, "f", strings.Repeat("x", i+1), mt)
				backupRun(t, src, dst, t0.Add(time.Duration(i)*time.Hour), tc.keep)
			}
			entries, err := os.ReadDir(filepath.Join(dst, ".v"))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range entries {
				got = append(got, e.Name())
				// Each folder holds the exact version replaced in that run.
				ts, _ := time.Parse(VersionStampFormat, e.Name())
				n := int(ts.Sub(t0) / time.Hour)
				b, err := os.ReadFile(filepath.Join(dst, ".v", e.Name(), "f"))
				if err != nil || string(b) != strings.Repeat("x", n) {
					t.Errorf("%s/f = %q, %v; want %q", e.Name(), b, err, strings.Repeat("x", n))
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("left %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPruneStamps(t *testing.T) {
	names := []string{"2026-01-03T000000Z", "2026-01-01T000000Z", "2026-01-02T000000Z"}
	now := time.Date(2026, 1, 3, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		keep Keep
		want []string
	}{
		{"zero keep drops none", Keep{}, nil},
		{"count keeps the newest, whatever the input order", Keep{Count: 2}, []string{"2026-01-01T000000Z"}},
		{"count equal to what exists drops none", Keep{Count: 3}, nil},
		{"age drops what is older", Keep{Age: 36 * time.Hour}, []string{"2026-01-01T000000Z"}},
		{"age shorter than all but the newest", Keep{Age: time.Hour}, []string{"2026-01-01T000000Z", "2026-01-02T000000Z", "2026-01-03T000000Z"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := PruneStamps(names, tc.keep, now); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// failRename is a target whose renames fail permanently.
type failRename struct{ backends.Backend }

func (f failRename) Rename(context.Context, string, string) error {
	return backends.Permanent(errors.New("rename refused"))
}

func TestBackupFailedMoveStopsTheUpload(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	mt := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	mkfile(t, src, "f", "old", mt)
	mkfile(t, src, "gone", "g", mt)
	backupRun(t, src, dst, mt, Keep{})
	mkfile(t, src, "f", "new", mt.Add(time.Hour))
	os.Remove(filepath.Join(src, "gone"))
	res, err := SyncTargets(context.Background(), FanOutOptions{
		Source: src, Mode: Backup, MaxDelete: -1,
		Versions: &Versions{Dir: ".v"},
		Targets:  []FanOutTarget{{Name: "t", Target: failRename{localTarget(t, dst)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var failed []string
	for _, p := range res[0].Report.Problems {
		failed = append(failed, p.Path)
	}
	slices.Sort(failed)
	if !slices.Equal(failed, []string{"f", "gone"}) {
		t.Errorf("problems %v, want f and gone", res[0].Report.Problems)
	}
	if got := readTree(t, dst); !maps.Equal(got, map[string]string{"f": "old", "gone": "g"}) {
		t.Errorf("target %v: the old files must stay when they cannot be moved", got)
	}
}

func TestSyncTargetsDeadTargetDoesNotStopOthers(t *testing.T) {
	src := sourceTree(t)
	good1, good2 := t.TempDir(), t.TempDir()
	dead := &deadTarget{}
	res, err := SyncTargets(context.Background(), FanOutOptions{
		Source: src, Mode: Mirror, MaxDelete: -1,
		Targets: []FanOutTarget{
			{Name: "a", Target: localTarget(t, good1)},
			{Name: "dead", Target: dead},
			{Name: "b", Target: localTarget(t, good2)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[1].Err, backends.ErrUnreachable) {
		t.Errorf("dead target: err %v, want ErrUnreachable", res[1].Err)
	}
	for _, i := range []int{0, 2} {
		if res[i].Err != nil || res[i].Report.Uploaded != 6 {
			t.Errorf("target %s: err %v, uploaded %d", res[i].Name, res[i].Err, res[i].Report.Uploaded)
		}
	}
	for _, d := range []string{good1, good2} {
		if diff := diffTrees(tree(t, src, false), tree(t, d, false)); diff != "" {
			t.Errorf("%s differs:\n%s", d, diff)
		}
	}
}

// deadTarget is a target whose every call fails as unreachable.
type deadTarget struct{ backends.Backend }

func (deadTarget) List(context.Context, string) ([]backends.FileInfo, error) {
	return nil, backends.Retryable(errors.Join(errors.New("connection refused"), backends.ErrUnreachable))
}
