package local

import (
	"errors"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// syncFilesystems calls syncfs(2) once for each distinct filesystem among
// files and dirs. syncfs flushes every dirty page and inode of the
// filesystem and commits its journal once, so it stands for one fsync per
// file and directory (see commit.go for why it is preferred to those).
func syncFilesystems(files, dirs []syncRef) error {
	var seen [4]uint64 // a target is nearly always one filesystem
	done := seen[:0]
	var errs []error
	for _, list := range [][]syncRef{files, dirs} {
		for _, r := range list {
			dup := false
			for _, d := range done {
				dup = dup || d == r.dev
			}
			if dup {
				continue
			}
			done = append(done, r.dev)
			for {
				err := unix.Syncfs(r.fd)
				if err != unix.EINTR {
					errs = append(errs, err)
					break
				}
			}
		}
	}
	return errors.Join(errs...)
}

// setFileTimes sets the mtime of the open file fd with nanoseconds
// (utimensat with a NULL path), leaving atime alone.
func setFileTimes(fd int, _ func() error, mtime time.Time) error {
	ts := [2]unix.Timespec{{Nsec: unix.UTIME_OMIT}, timespec(mtime)}
	for {
		_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return e
	}
}

// setTimesAt sets the mtime of name in dirfd, not following a symlink,
// leaving atime alone.
func setTimesAt(dirfd int, name string, mtime time.Time) error {
	ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, timespec(mtime)}
	return unix.UtimesNanoAt(dirfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// startWriteback asks the kernel to start writing fd[off:off+n] to disk
// without waiting for it. It is only a hint: errors show up at fsync.
func startWriteback(fd int, off, n int64) {
	unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// stillBeneath reports whether dir, resolved from the root's descriptor
// without following any link and without leaving the root, is still the
// directory dev/ino. Following links would accept a cached directory that
// was moved out of the root with a link to it left in its place. A link
// anywhere on the way (also one that stays inside) answers false, as does
// a kernel without openat2 (before 5.6): the caller then opens dir through
// os.Root, which follows the links that stay inside and refuses the rest.
func stillBeneath(rootfd int, dir string, dev, ino uint64) bool {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	}
	var fd int
	var err error
	for {
		if fd, err = unix.Openat2(rootfd, dir, &how); err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	return fstat(fd, &st) == nil && uint64(st.Dev) == dev && uint64(st.Ino) == ino
}
