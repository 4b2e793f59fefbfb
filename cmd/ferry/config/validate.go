package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Checks against the filesystem, run after the whole file is decoded. Each
// still points at the line of the key whose value it checks.

// checkSources checks that every source is a directory and that no local
// target lies inside its own source or holds it, which would make every run
// copy its own output.
func (d *decoder) checkSources(c *Config) {
	for i, j := range c.Jobs {
		if j.Source == "" {
			continue
		}
		key := fmt.Sprintf("jobs[%d].source", i)
		shown := j.Source
		if j.sourceRaw != j.Source {
			shown = fmt.Sprintf("%s (%s)", j.sourceRaw, j.Source)
		}
		fi, err := os.Stat(j.Source)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			d.at(j.sourcePos, key, "%s does not exist", shown)
			continue
		case err != nil:
			d.at(j.sourcePos, key, "%v", err)
			continue
		case !fi.IsDir():
			d.at(j.sourcePos, key, "%s is not a directory", shown)
			continue
		}
		src := realPath(j.Source)
		for ti, t := range j.Targets {
			if t.Type != Local || t.Path == "" {
				continue
			}
			dst := realPath(t.Path)
			tkey := fmt.Sprintf("jobs[%d].targets[%d].path", i, ti)
			switch {
			case dst == src:
				d.at(t.pathPos, tkey, "%s is the job's source", t.Path)
			case within(dst, src):
				d.at(t.pathPos, tkey, "%s is inside the job's source %s: each run would copy its own output", t.Path, j.Source)
			case within(src, dst):
				d.at(t.pathPos, tkey, "%s holds the job's source %s: a mirror would delete it", t.Path, j.Source)
			}
		}
	}
}

// checkOverlaps looks across jobs at local targets: two targets in one
// folder undo each other's work, and a mirror deletes whatever another job
// writes or reads below it.
func (d *decoder) checkOverlaps(c *Config) {
	type loc struct {
		job, idx int
		path     string
		t        *Target
	}
	var locs []loc
	for i, j := range c.Jobs {
		for ti, t := range j.Targets {
			if t.Type == Local && t.Path != "" {
				locs = append(locs, loc{i, ti, realPath(t.Path), t})
			}
		}
	}
	name := func(l loc) string {
		return fmt.Sprintf("jobs[%d].targets[%d] (line %d)", l.job, l.idx, l.t.Line)
	}
	key := func(l loc) string { return fmt.Sprintf("jobs[%d].targets[%d].path", l.job, l.idx) }
	mirror := func(l loc) bool { return c.Jobs[l.job].Mode == Mirror }
	for a := range locs {
		for b := range a {
			A, B := locs[a], locs[b]
			msg := ""
			switch {
			case A.path == B.path:
				msg = "%s is also the target of %s: two writers in one folder undo each other"
			case within(B.path, A.path) && mirror(A):
				msg = "%s holds the target of %s: this mirror would delete what that one writes"
			case within(A.path, B.path) && mirror(B):
				msg = "%s is inside the target of %s, a mirror that would delete it"
			}
			if msg != "" {
				d.at(A.t.pathPos, key(A), msg, A.t.Path, name(B))
				break // one overlap per target is enough to act on
			}
		}
		if !mirror(locs[a]) {
			continue
		}
		for k, j := range c.Jobs {
			if k == locs[a].job || j.Source == "" {
				continue
			}
			if src := realPath(j.Source); src == locs[a].path || within(src, locs[a].path) {
				d.at(locs[a].t.pathPos, key(locs[a]), "%s holds the source of jobs[%d] (line %d): this mirror would delete it", locs[a].t.Path, k, j.Line)
			}
		}
	}
}

// within reports whether p is strictly below dir.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// realPath resolves symlinks in the longest existing prefix of p, so a
// target reached through a link is still seen inside its source.
func realPath(p string) string {
	rest := ""
	for cur := p; ; {
		if r, err := filepath.EvalSymlinks(cur); err == nil {
			return filepath.Join(r, rest)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

// checkSecretFile refuses a password or passphrase file that group or others
// can read, as ssh does for keys. s is where the value p was written.
func (d *decoder) checkSecretFile(s setter, p string) {
	if p == "" {
		return
	}
	fi, err := os.Stat(p)
	if err != nil {
		d.errorf(s.value, s.path, "%s: %v", p, unwrapPathErr(err))
		return
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		d.errorf(s.value, s.path, "%s has mode %04o, which lets group or others read it: run chmod 600 %s", p, mode, p)
	}
}

// checkExists reports a file named in the config that cannot be read.
func (d *decoder) checkExists(s setter, p string) {
	if p == "" {
		return
	}
	if _, err := os.Stat(p); err != nil {
		d.errorf(s.value, s.path, "%s: %v", p, unwrapPathErr(err))
	}
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		if errors.Is(pe.Err, fs.ErrNotExist) {
			return errors.New("does not exist")
		}
		return pe.Err
	}
	return err
}
