package backends

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxNameLen is the longest name, in bytes, that ferry writes; it is the limit
// of the common Linux filesystems and of most SFTP servers.
const MaxNameLen = 255

// CheckName returns an error wrapping ErrUnsafePath unless name is one
// ordinary path element: not empty, not "." or "..", no '/', no NUL or other
// control characters (C0, DEL, C1), valid UTF-8, at most MaxNameLen bytes. Names that come
// from a target listing are checked with it before they are used.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name: %w", ErrUnsafePath)
	case name == "." || name == "..":
		return fmt.Errorf("name %q: %w", name, ErrUnsafePath)
	case len(name) > MaxNameLen:
		return fmt.Errorf("name %.40q... is %d bytes, longer than %d: %w", name, len(name), MaxNameLen, ErrUnsafePath)
	case !utf8.ValidString(name):
		return fmt.Errorf("name %q is not valid UTF-8: %w", name, ErrUnsafePath)
	}
	for _, r := range name {
		if r == '/' || unicode.IsControl(r) {
			return fmt.Errorf("name %q contains %q: %w", name, r, ErrUnsafePath)
		}
	}
	return nil
}

// CheckPath returns an error wrapping ErrUnsafePath unless p is a clean,
// relative, slash-separated path whose every element passes CheckName. The
// empty string names the root and is allowed. Nothing is cleaned silently: a
// path with "//", a trailing slash or "." elements is refused, so that what
// is checked is exactly what is used.
func CheckPath(p string) error {
	if p == "" {
		return nil
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q is absolute: %w", p, ErrUnsafePath)
	}
	for elem := range strings.SplitSeq(p, "/") {
		if err := CheckName(elem); err != nil {
			return fmt.Errorf("path %q: %w", p, err)
		}
	}
	return nil
}

// Join joins a directory path and a name into a path relative to the root.
func Join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// Split returns the parent directory and the last element of p.
func Split(p string) (dir, name string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}
