package state

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestStateFilesOwnerOnly checks that what the store creates is readable by
// its owner alone, whatever the umask: the directory 0700, the state file
// 0600, and a new file made after a corrupt one was moved aside 0600 too.
// The state lists every path of a target, which others need not see.
func TestStateFilesOwnerOnly(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "state", "ferry")
	path := filepath.Join(dir, FileName("job", "target"))
	s, err := Open(path, Options{Target: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wantMode(t, dir, 0o700)
	wantMode(t, filepath.Dir(dir), 0o700)
	wantMode(t, path, 0o600)

	if err := os.WriteFile(path, []byte("not a store"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{Target: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Rebuilt() == "" {
		t.Fatalf("a corrupt file was not rebuilt")
	}
	wantMode(t, path, 0o600)
}

func wantMode(t *testing.T, p string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %04o, want %04o", p, got, want)
	}
}
