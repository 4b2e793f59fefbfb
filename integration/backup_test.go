package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/sshd"
)

// TestBackupVersionsBinary runs a backup job with versions three times
// through the binary, to a local and an SFTP target, changing and deleting
// files between runs: every replaced or deleted version must be in
// backup_dir with its exact content, the live files must be the source's,
// and keep: 2 must leave the two newest version folders.
func TestBackupVersionsBinary(t *testing.T) {
	ferrybin.Path(t)
	srv := sshd.Start(t, sshd.Options{})
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	localDst := filepath.Join(tmp, "local")
	write := func(p, content string, age time.Duration) {
		t.Helper()
		full := filepath.Join(src, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(-age).Truncate(time.Second)
		if err := os.Chtimes(full, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	cfg := writeRunConfig(t, tmp, fmt.Sprintf("jobs:\n  - name: nightly\n    source: %q\n    mode: backup\n    backup_dir: .versions\n    keep: 2\n    targets:\n", src)+
		sftpTargetYAML("remote", srv, "")+
		fmt.Sprintf("      - name: disk\n        type: local\n        path: %q\n", localDst))
	run := func(round int) {
		t.Helper()
		res := ferrybin.Run(t, time.Minute, "run", "--once", "-c", cfg)
		if res.ExitCode != 0 {
			t.Fatalf("round %d:\n%v", round, res)
		}
		time.Sleep(1100 * time.Millisecond) // one version folder per second
	}

	write("a.txt", "a1", 3*time.Hour)
	write("docs/b.txt", "b1", 3*time.Hour)
	write("docs/old/c.txt", "c1", 3*time.Hour)
	write("keep.txt", "same", 3*time.Hour)
	run(1)

	write("a.txt", "a2", 2*time.Hour)
	os.Remove(filepath.Join(src, "docs/b.txt"))
	run(2)

	write("a.txt", "a3", time.Hour)
	os.RemoveAll(filepath.Join(src, "docs/old"))
	write("docs/b.txt", "b3", time.Hour)
	run(3)

	for _, dst := range []string{localDst, srv.Root()} {
		got := readAll(t, dst)
		live := map[string]string{}
		var folders []string
		versions := map[string][]string{}
		for p, c := range got {
			if rest, ok := strings.CutPrefix(p, ".versions/"); ok {
				folder, file, _ := strings.Cut(rest, "/")
				if !slices.Contains(folders, folder) {
					folders = append(folders, folder)
				}
				versions[file] = append(versions[file], c)
				slices.Sort(versions[file])
				continue
			}
			live[p] = c
		}
		want := map[string]string{"a.txt": "a3", "docs/b.txt": "b3", "keep.txt": "same"}
		if fmt.Sprint(live) != fmt.Sprint(want) {
			t.Errorf("%s: live files %v, want %v", dst, live, want)
		}
		// Run 2 moved a1 and b1, run 3 moved a2 and docs/old.
		wantVersions := map[string][]string{"a.txt": {"a1", "a2"}, "docs/b.txt": {"b1"}, "docs/old/c.txt": {"c1"}}
		if fmt.Sprint(versions) != fmt.Sprint(wantVersions) {
			t.Errorf("%s: versions %v, want %v (all: %v)", dst, versions, wantVersions, got)
		}
		if len(folders) != 2 {
			t.Errorf("%s: version folders %v, want 2", dst, folders)
		}
	}

	// Two more runs that each replace a.txt: keep: 2 prunes to the two
	// newest folders, and the newest holds the version just replaced.
	write("a.txt", "a4", 30*time.Minute)
	run(4)
	write("a.txt", "a5", 20*time.Minute)
	run(5)
	for _, dst := range []string{localDst, srv.Root()} {
		entries, err := os.ReadDir(filepath.Join(dst, ".versions"))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 2 {
			t.Fatalf("%s: %d version folders after pruning, want 2", dst, len(entries))
		}
		b, err := os.ReadFile(filepath.Join(dst, ".versions", entries[1].Name(), "a.txt"))
		if err != nil || string(b) != "a4" {
			t.Errorf("%s: newest version of a.txt %q, %v; want a4", dst, b, err)
		}
	}
}

// readAll returns every regular file under root with its content.
func readAll(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		out[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
