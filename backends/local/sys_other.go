//go:build !linux

package local

import (
	"time"

	"golang.org/x/sys/unix"
)

// syncFilesystems fsyncs each file and directory where syncfs(2), which is
// Linux-only, does not exist.
func syncFilesystems(files, dirs []syncRef) error { return fsyncEach(files, dirs) }

// setFileTimes uses the path-based fallback where utimensat cannot take a
// descriptor alone.
func setFileTimes(_ int, byName func() error, _ time.Time) error {
	return byName()
}

// setTimesAt sets atime and mtime of name in dirfd to mtime, not following
// a symlink.
func setTimesAt(dirfd int, name string, mtime time.Time) error {
	ts := timespec(mtime)
	return unix.UtimesNanoAt(dirfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// startWriteback is a no-op where sync_file_range(2) does not exist.
func startWriteback(int, int64, int64) {}

// stillBeneath answers false where openat2(2), which is Linux-only, does
// not exist: a path check that follows links could accept a cached
// directory moved out of the root, so each use opens dir through os.Root.
func stillBeneath(int, string, uint64, uint64) bool { return false }
