//go:build !linux

package engine

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// readDirStat lists the directory at path with its entries' metadata,
// sorted by name and unfiltered (see the Linux version). Only the root may be
// reached through a symlink.
func readDirStat(root, rel string) (entries []scanEntry, problems []rawProblem, err error) {
	path := root
	if rel != "" {
		path = filepath.Join(root, filepath.FromSlash(rel))
	}
	if rel != "" {
		fi, err := os.Lstat(path)
		if err != nil {
			return nil, nil, err
		}
		if !fi.IsDir() {
			return nil, nil, &fs.PathError{Op: "open", Path: path, Err: errors.New("not a directory")}
		}
	}
	d, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	slices.Sort(names)
	for _, name := range names {
		full := filepath.Join(path, name)
		info, lerr := os.Lstat(full)
		if errors.Is(lerr, fs.ErrNotExist) {
			continue
		}
		if lerr != nil {
			problems = append(problems, rawProblem{name: name, err: lerr})
			continue
		}
		mt := info.ModTime()
		e := scanEntry{name: name, mode: info.Mode().Perm() | info.Mode().Type(), sec: mt.Unix(), nsec: int32(mt.Nanosecond())}
		switch {
		case info.Mode().IsRegular():
			e.size = info.Size()
		case info.Mode()&fs.ModeSymlink != 0:
			target, lerr := os.Readlink(full)
			if lerr != nil {
				problems = append(problems, rawProblem{name: name, err: lerr})
				continue
			}
			e.link = filepath.ToSlash(target)
			e.size = int64(len(e.link))
		}
		entries = append(entries, e)
	}
	return entries, problems, err
}
