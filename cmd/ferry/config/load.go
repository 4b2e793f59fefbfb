package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads and checks the config file at path, expanding ${VAR} from the
// process environment. On any problem in the file it returns nil and an
// Errors holding every problem found; a file that cannot be read gives a
// plain wrapped error. It refuses a file that holds a secret inline while
// group or others can read it. Safe for concurrent use; it reads the
// filesystem (the file, each source and the files a target names) but
// writes nothing.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return parse(path, data, os.LookupEnv, fi.Mode().Perm(), true)
}

// Parse checks config text as if read from the file name (which is used in
// messages and to resolve relative paths), taking ${VAR} from env; a nil env
// is os.LookupEnv. It does everything Load does except the permission check,
// which needs a file. On failure the error is an Errors and the Config nil.
// Safe for concurrent use if env is.
func Parse(name string, data []byte, env func(string) (string, bool)) (*Config, error) {
	return parse(name, data, env, 0, false)
}

func parse(name string, data []byte, env func(string) (string, bool), perm os.FileMode, checkPerm bool) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	dir, err := filepath.Abs(filepath.Dir(name))
	if err != nil {
		dir = filepath.Dir(name)
	}
	home, _ := env("HOME")
	d := &decoder{collector: collector{file: name}, env: env, dir: dir, home: home}
	var c *Config
	if root, ok := d.document(data); ok {
		c = d.config(root)
		if c != nil {
			c.File = name
			d.checkSources(c)
			d.checkOverlaps(c)
		}
	}
	if checkPerm && d.inlineSecret != nil && perm&0o077 != 0 {
		d.errorf(d.inlineSecret, d.inlineSecretKey,
			"a secret is written in the file, and %s has mode %04o, which lets group or others read it: run chmod 600 %s (or take the secret from ${VAR} or a *_file)",
			name, perm, name)
	}
	if err := d.sorted(); err != nil {
		return nil, err
	}
	if c == nil {
		// Unreachable: every path that yields no Config records an error.
		return nil, Errors{{File: name, Line: 1, Column: 1, Msg: "no config"}}
	}
	return c, nil
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// document parses the YAML text and returns its root mapping.
func (d *decoder) document(data []byte) (root *yaml.Node, ok bool) {
	defer func() {
		// The YAML parser should never panic, but a crash on a hostile
		// file would be worse than a message.
		if r := recover(); r != nil {
			d.at(position{1, 0}, "", "YAML parser failed: %v", r)
			root, ok = nil, false
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.at(position{1, 1}, "", "the file is empty: it needs a jobs: list")
		} else {
			d.syntaxError(data, err)
		}
		return nil, false
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		at := &next
		if len(next.Content) > 0 {
			at = next.Content[0]
		}
		d.errorf(at, "", "a second YAML document (after ---) is not allowed: put every job in one")
	} else if !errors.Is(err, io.EOF) {
		d.syntaxError(data, err)
	}
	root = &doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			d.at(position{1, 1}, "", "the file is empty: it needs a jobs: list")
			return nil, false
		}
		root = doc.Content[0]
	}
	root = resolve(root)
	if isNull(root) {
		d.errorf(root, "", "the file is empty: it needs a jobs: list")
		return nil, false
	}
	if root.Kind != yaml.MappingNode {
		d.errorf(root, "", "the top level must be a mapping (state_dir:, defaults:, jobs:), got %s", kindName(root))
		return nil, false
	}
	return root, true
}

// syntaxError turns a YAML parser error into an Error. The parser names the
// line where the enclosing block began (and counts it from 0 for some
// errors), not the line of the problem; the first prefix of the file that
// fails to parse ends at the problem, so that line is reported. The parser
// gives no column, so Column stays 0.
func (d *decoder) syntaxError(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if l := firstBadLine(data); l > 0 {
		line = l
	}
	d.at(position{max(line, 1), 0}, "", "YAML syntax: %s", msg)
}

// firstBadLine returns the 1-based number of the first line whose prefix
// of the file does not parse, or 0 when none is found. Each try parses the
// prefix again: small files (nearly every config) try each line in turn;
// larger ones bisect, which finds a line where the file turns from parsing
// to failing, the first one unless a multi-line value opened earlier.
func firstBadLine(data []byte) int {
	if len(data) > 1<<20 {
		return 0
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	ends := make([]int, len(lines)+1)
	for i, l := range lines {
		ends[i+1] = ends[i] + len(l)
	}
	if len(lines)*len(data) <= 8<<20 { // about 4 MB of YAML parsed in all
		for i := 1; i <= len(lines); i++ {
			if !parses(data[:ends[i]]) {
				return i
			}
		}
		return 0
	}
	lo, hi := 0, len(lines) // the prefix of lo lines parses, of hi fails
	if parses(data) {
		return 0
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if parses(data[:ends[mid]]) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

func parses(data []byte) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// Check is the logic of `ferry check`: it loads the file at path and, when
// it is valid, writes a short summary of its jobs and targets to w. On a
// problem it writes nothing and returns Load's error, for the caller to
// print and exit with status 2. Safe for concurrent use.
func Check(w io.Writer, path string) error {
	c, err := Load(path)
	if err != nil {
		return err
	}
	n := 0
	for _, j := range c.Jobs {
		n += len(j.Targets)
	}
	fmt.Fprintf(w, "%s: ok: %d %s, %d %s\n", path, len(c.Jobs), plural(len(c.Jobs), "job"), n, plural(n, "target"))
	for _, j := range c.Jobs {
		fmt.Fprintf(w, "  %s\n", j)
		for _, t := range j.Targets {
			fmt.Fprintf(w, "    -> %s\n", t)
		}
	}
	return nil
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
