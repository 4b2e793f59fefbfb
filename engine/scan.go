package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/ferrysync/ferry/backends"
)

// ErrSpecialFile marks a source entry that is neither a regular file, a
// directory nor a symlink (socket, fifo, device): ferry skips it.
var ErrSpecialFile = errors.New("special file (socket, fifo or device) skipped")

// Incomplete reports whether problems from Scan or ListTarget mean that
// entries may be missing from a list, so that nothing may be deleted
// (PlanOptions.Incomplete). Skipped special files do not count: they were
// read, and are only not copied.
func Incomplete(problems []Problem) bool {
	for _, p := range problems {
		if !errors.Is(p.Err, ErrSpecialFile) {
			return true
		}
	}
	return false
}

// readDirNames lists the names in the directory at path. Tests replace it to
// make a directory unreadable even for root, which ignores permission bits.
var readDirNames = func(path string) ([]string, error) {
	d, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	// On error the names read so far are still returned and used.
	return d.Readdirnames(-1)
}

// Scan walks the local directory root and returns its entries sorted by Path
// in ComparePaths order (directories included, the root itself not), never
// following a symlink; the root itself may be a symlink to a directory.
// Excluded paths and ferry's partial files are left out, and excluded
// directories are not entered.
//
// Problems with single entries (unreadable directories or files, names that
// fail backends.CheckName, special files such as sockets, fifos and devices)
// are returned and the walk goes on. err is non-nil only if root itself
// cannot be read (a missing root gives an error wrapping fs.ErrNotExist) or
// ctx is cancelled (an error wrapping ctx.Err()). Scan reads only; it is
// safe to run several at once.
func Scan(ctx context.Context, root string, f *Filter, log *slog.Logger) ([]backends.FileInfo, []Problem, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, nil, fmt.Errorf("scan source %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, nil, fmt.Errorf("scan source %s: not a directory", root)
	}
	names, err := readDirNames(root)
	if err != nil {
		return nil, nil, fmt.Errorf("scan source %s: %w", root, err)
	}
	s := &scanner{ctx: ctx, root: root, f: f, log: log}
	if err := s.entries("", names); err != nil {
		return nil, nil, fmt.Errorf("scan source %s: %w", root, err)
	}
	return s.out, s.problems, nil
}

type scanner struct {
	ctx      context.Context
	root     string
	f        *Filter
	log      *slog.Logger
	out      []backends.FileInfo
	problems []Problem
}

func (s *scanner) problem(path string, err error) {
	s.log.Warn("scan: skipping entry", "path", path, "err", err)
	s.problems = append(s.problems, Problem{Path: path, Err: err})
}

// entries adds the children names of the directory dir (relative to the
// root) and their subtrees. Visiting names in sorted order, each directory
// before its contents, yields ComparePaths order without a global sort.
func (s *scanner) entries(dir string, names []string) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range names {
		rel := backends.Join(dir, name)
		if err := backends.CheckName(name); err != nil {
			s.problem(rel, err)
			continue
		}
		full := filepath.Join(s.root, filepath.FromSlash(rel))
		info, err := os.Lstat(full)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// Removed since the directory was read: it is simply gone.
				s.log.Debug("scan: entry vanished", "path", rel)
				continue
			}
			s.problem(rel, err)
			continue
		}
		mode := info.Mode()
		if s.f.excludedSelf(rel, mode.IsDir()) {
			continue
		}
		e := backends.FileInfo{Path: rel, ModTime: info.ModTime(), Mode: mode.Perm()}
		switch {
		case mode.IsRegular():
			e.Size = info.Size()
		case mode.IsDir():
			e.Mode |= fs.ModeDir
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(full)
			if err != nil {
				s.problem(rel, err)
				continue
			}
			e.Mode |= fs.ModeSymlink
			e.LinkTarget = filepath.ToSlash(target)
			e.Size = int64(len(e.LinkTarget))
		default:
			s.problem(rel, fmt.Errorf("%w: %s", ErrSpecialFile, typeName(mode)))
			continue
		}
		s.out = append(s.out, e)
		if !mode.IsDir() {
			continue
		}
		children, err := readDirNames(full)
		if err != nil {
			// The directory itself stays listed, so the target keeps its
			// copy; the caller sees the problem and plans no deletes.
			s.problem(rel, fmt.Errorf("read directory: %w", err))
		}
		if len(children) > 0 {
			if err := s.entries(rel, children); err != nil {
				return err
			}
		}
	}
	return nil
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "irregular file"
}
