package engine

import (
	"fmt"

	"github.com/ferrysync/ferry/backends"
)

// Mode says what a sync does with files the source lacks.
type Mode int

const (
	// Mirror makes the target equal to the source: extra files are deleted.
	Mirror Mode = iota
	// Backup adds and updates but never deletes.
	Backup
)

func (m Mode) String() string {
	switch m {
	case Mirror:
		return "mirror"
	case Backup:
		return "backup"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses "mirror" or "backup".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "mirror":
		return Mirror, nil
	case "backup":
		return Backup, nil
	}
	return 0, fmt.Errorf("unknown mode %q (want mirror or backup)", s)
}

// OpKind is what one planned operation does.
type OpKind int

// The kinds, in the order a plan runs them: directories first, content,
// metadata fixes, deletes last.
const (
	OpMkdir      OpKind = iota // create directory Path
	OpUpload                   // copy source file Path to the target
	OpSymlink                  // create symlink Path -> Src.LinkTarget
	OpSetModTime               // set mtime (and mode) of Path from Src without copying
	OpDelete                   // remove Path (a file, link, or an emptied directory)
	// OpArchive moves target entry Path (with all it holds) into the run's
	// versions folder instead of deleting it: backup mode with versions.
	// It runs with the deletes.
	OpArchive
)

func (k OpKind) String() string {
	switch k {
	case OpMkdir:
		return "mkdir"
	case OpUpload:
		return "upload"
	case OpSymlink:
		return "symlink"
	case OpSetModTime:
		return "touch"
	case OpDelete:
		return "delete"
	case OpArchive:
		return "archive"
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// Op is one step of a plan.
type Op struct {
	Kind OpKind
	Path string
	// Src is the source entry the op brings over (zero for OpDelete and
	// OpArchive).
	Src backends.FileInfo
	// Dst is the target entry the op replaces or removes, if any.
	Dst *backends.FileInfo
	// Reason says why, for --dry-run and logs: "new", "size", "mtime",
	// "checksum", "type", "extraneous".
	Reason string
}

func (o Op) String() string {
	if o.Reason == "" {
		return fmt.Sprintf("%s %s", o.Kind, o.Path)
	}
	return fmt.Sprintf("%s %s (%s)", o.Kind, o.Path, o.Reason)
}

// Problem is a failure with one path that did not stop the run; problems are
// collected and reported at the end, and make the exit status 1.
type Problem struct {
	Path string
	Err  error
}

func (p Problem) Error() string { return fmt.Sprintf("%s: %v", p.Path, p.Err) }
func (p Problem) Unwrap() error { return p.Err }
