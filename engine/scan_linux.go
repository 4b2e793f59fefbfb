package engine

import (
	"bytes"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// readDirStat lists the directory rel (slash-separated, "" for root
// itself) under root with its entries' metadata, sorted by name and
// unfiltered. It reads the directory with getdents and each entry with
// statx relative to the directory, which spares the kernel a walk of the
// whole path per entry and the process an allocation per entry. Only the
// root may be reached through a symlink. On a read error the entries read
// so far are returned with it. Entries that fail on their own are in
// problems; entries gone since the read are left out.
func readDirStat(root, rel string) (entries []scanEntry, problems []rawProblem, err error) {
	path := root
	if rel != "" {
		path = filepath.Join(root, filepath.FromSlash(rel))
	}
	fd, err := openDir(root, rel, path)
	if err != nil {
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)

	buf := direntBuf.Get().(*[]byte)
	defer direntBuf.Put(buf)
	var names []byte // every name, NUL-terminated, in the order read
	for {
		n, err := unix.Getdents(fd, *buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			entries, problems = statAll(fd, names, path)
			return entries, problems, &fs.PathError{Op: "readdirent", Path: path, Err: err}
		}
		if n <= 0 {
			break
		}
		if names, err = appendNames(names, (*buf)[:n]); err != nil {
			entries, problems = statAll(fd, names, path)
			return entries, problems, &fs.PathError{Op: "readdirent", Path: path, Err: err}
		}
	}
	entries, problems = statAll(fd, names, path)
	return entries, problems, nil
}

// noOpenat2 is set once openat2 turned out missing (kernels before 5.6).
var noOpenat2 atomic.Bool

// openDir opens the directory rel under root for reading. Below the root
// it resolves rel from the root's descriptor without following any link
// and without leaving the root: a directory on the way that was replaced
// by a link after its parent was read must fail the read, not list what
// the link points to. Without openat2 only the last element is kept from
// being a link.
func openDir(root, rel, path string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	if rel == "" {
		return retryEINTR(func() (int, error) { return unix.Open(root, flags, 0) })
	}
	if !noOpenat2.Load() {
		rootfd, err := retryEINTR(func() (int, error) { return unix.Open(root, unix.O_PATH|flags, 0) })
		if err != nil {
			return -1, err
		}
		defer unix.Close(rootfd)
		how := unix.OpenHow{Flags: flags | unix.O_NOFOLLOW, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS}
		fd, err := retryEINTR(func() (int, error) { return unix.Openat2(rootfd, rel, &how) })
		if err != unix.ENOSYS {
			return fd, err
		}
		noOpenat2.Store(true)
	}
	return retryEINTR(func() (int, error) { return unix.Open(path, flags|unix.O_NOFOLLOW, 0) })
}

func retryEINTR(open func() (int, error)) (int, error) {
	for {
		fd, err := open()
		if err != unix.EINTR {
			return fd, err
		}
	}
}

var direntBuf = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// appendNames adds the names of the linux_dirent64 records in b to names,
// each followed by a NUL, leaving out "." and "..". A record whose length
// does not fit what is left of b fails: the names after it would be lost
// without a word, and a directory read short must make the run delete
// nothing.
func appendNames(names, b []byte) ([]byte, error) {
	for len(b) > 0 {
		if len(b) < 19 {
			return names, fmt.Errorf("dirent record cut short: %d bytes left", len(b))
		}
		reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
		if reclen < 19 || reclen > len(b) {
			return names, fmt.Errorf("dirent record length %d with %d bytes left", reclen, len(b))
		}
		ino := *(*uint64)(unsafe.Pointer(&b[0]))
		name := b[19:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		b = b[reclen:]
		if ino == 0 || string(name) == "." || string(name) == ".." {
			continue
		}
		names = append(append(names, name...), 0)
	}
	return names, nil
}

// nameSpan is where one name lies in a directory's names.
type nameSpan struct{ start, end uint32 }

// statAll reads the metadata of each NUL-terminated name in names, relative
// to the directory fd, and returns the entries sorted by name. The entries'
// names share one string.
func statAll(fd int, names []byte, dir string) (entries []scanEntry, problems []rawProblem) {
	if len(names) == 0 {
		return nil, nil
	}
	// Sorting the names' places, rather than the entries made from them,
	// moves 8 bytes a swap instead of a whole entry.
	var spans []nameSpan
	for start, i := 0, 0; i < len(names); i++ {
		if names[i] == 0 {
			spans = append(spans, nameSpan{uint32(start), uint32(i)})
			start = i + 1
		}
	}
	slices.SortFunc(spans, func(a, b nameSpan) int {
		return bytes.Compare(names[a.start:a.end], names[b.start:b.end])
	})
	all := string(names)
	entries = make([]scanEntry, 0, len(spans))
	var st stat
	for _, sp := range spans {
		name := all[sp.start:sp.end]
		err := lstatAt(fd, &names[sp.start], name, &st)
		if err == unix.ENOENT {
			continue
		}
		if err != nil {
			problems = append(problems, rawProblem{name: name, err: &fs.PathError{Op: "lstat", Path: filepath.Join(dir, name), Err: err}})
			continue
		}
		e := scanEntry{name: name}
		e.mode = fs.FileMode(st.mode & 0o777)
		e.sec, e.nsec = st.sec, st.nsec
		switch st.mode & unix.S_IFMT {
		case unix.S_IFREG:
			e.size = st.size
		case unix.S_IFDIR:
			e.mode |= fs.ModeDir
		case unix.S_IFLNK:
			target, err := readlinkat(fd, name)
			if err == unix.ENOENT {
				continue
			}
			if err != nil {
				problems = append(problems, rawProblem{name: name, err: &fs.PathError{Op: "readlink", Path: filepath.Join(dir, name), Err: err}})
				continue
			}
			e.mode |= fs.ModeSymlink
			e.link = filepath.ToSlash(target)
			e.size = int64(len(e.link))
		case unix.S_IFIFO:
			e.mode |= fs.ModeNamedPipe
		case unix.S_IFSOCK:
			e.mode |= fs.ModeSocket
		case unix.S_IFCHR:
			e.mode |= fs.ModeDevice | fs.ModeCharDevice
		case unix.S_IFBLK:
			e.mode |= fs.ModeDevice
		default:
			e.mode |= fs.ModeIrregular
		}
		entries = append(entries, e)
	}
	return entries, problems
}

// stat is what a scan keeps of an entry's metadata.
type stat struct {
	mode uint32
	size int64
	sec  int64
	nsec int32
}

// noStatx is set once statx turned out missing or forbidden (old kernels,
// strict seccomp filters); fstatat serves from then on.
var noStatx atomic.Bool

// lstatAt reads the metadata of the entry name (NUL-terminated at cname)
// in the directory dirfd, not following a symlink. statx takes the name
// without a copy and can be told to fetch only the fields a scan needs.
func lstatAt(dirfd int, cname *byte, name string, st *stat) error {
	if !noStatx.Load() {
		var sx unix.Statx_t
		for {
			_, _, errno := unix.Syscall6(unix.SYS_STATX, uintptr(dirfd), uintptr(unsafe.Pointer(cname)),
				unix.AT_SYMLINK_NOFOLLOW|unix.AT_STATX_SYNC_AS_STAT,
				unix.STATX_TYPE|unix.STATX_MODE|unix.STATX_SIZE|unix.STATX_MTIME,
				uintptr(unsafe.Pointer(&sx)), 0)
			switch errno {
			case 0:
				*st = stat{mode: uint32(sx.Mode), size: int64(sx.Size), sec: sx.Mtime.Sec, nsec: int32(sx.Mtime.Nsec)}
				return nil
			case unix.EINTR:
				continue
			case unix.ENOSYS, unix.EPERM:
				noStatx.Store(true)
			default:
				return errno
			}
			break
		}
	}
	var s unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &s, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	*st = stat{mode: s.Mode, size: s.Size, sec: s.Mtim.Sec, nsec: int32(s.Mtim.Nsec)}
	return nil
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		b := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, b)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(b[:n]), nil
		}
		if size > 1<<20 {
			return "", fmt.Errorf("link target longer than %d bytes", size)
		}
	}
}
