//go:build !linux

package local

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// syncFilesystems falls back to sync(2), which flushes every filesystem;
// syncfs(2) is Linux-only.
func syncFilesystems(files, dirs []*os.File) error {
	unix.Sync()
	return nil
}

// setFileTimes uses the path-based fallback where utimensat cannot take a
// descriptor alone.
func setFileTimes(_ *os.File, byName func() error, _ time.Time) error {
	return byName()
}

// setTimesAt sets atime and mtime of name in dirfd to mtime, not following
// a symlink.
func setTimesAt(dirfd int, name string, mtime time.Time) error {
	ts := timespec(mtime)
	return unix.UtimesNanoAt(dirfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// startWriteback is a no-op where sync_file_range(2) does not exist.
func startWriteback(*os.File, int64, int64) {}
