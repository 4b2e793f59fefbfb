package local

import (
	"errors"
	"os"
	"slices"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// syncFilesystems calls syncfs(2) once for each distinct filesystem among
// files and dirs. syncfs flushes every dirty page and inode of the
// filesystem and commits its journal once, so it stands for one fsync per
// file and directory (see commit.go for why it is preferred to those).
func syncFilesystems(files, dirs []*os.File) error {
	fds := append(slices.Clip(files), dirs...)
	seen := make(map[uint64]bool, 1)
	var errs []error
	for _, f := range fds {
		rc, err := f.SyscallConn()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var serr error
		cerr := rc.Control(func(fd uintptr) {
			var st unix.Stat_t
			if serr = unix.Fstat(int(fd), &st); serr != nil {
				return
			}
			if seen[st.Dev] {
				return
			}
			seen[st.Dev] = true
			serr = unix.Syncfs(int(fd))
		})
		errs = append(errs, cerr, serr)
	}
	return errors.Join(errs...)
}

// setFileTimes sets f's mtime with nanoseconds through its descriptor
// (utimensat with a NULL path), leaving atime alone.
func setFileTimes(f *os.File, _ func() error, mtime time.Time) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, timespec(mtime)}
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, fd, 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
		if e != 0 {
			serr = e
		}
	})
	if cerr != nil {
		return cerr
	}
	return serr
}

// setTimesAt sets the mtime of name in dirfd, not following a symlink,
// leaving atime alone.
func setTimesAt(dirfd int, name string, mtime time.Time) error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, timespec(mtime)}
	return unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// startWriteback asks the kernel to start writing f[off:off+n] to disk
// without waiting for it. It is only a hint: errors show up at fsync.
func startWriteback(f *os.File, off, n int64) {
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.SyncFileRange(int(fd), off, n, unix.SYNC_FILE_RANGE_WRITE) })
	}
}
