package engine

import (
	"fmt"
	"strings"

	"github.com/bmatcuk/doublestar/v4"

	"github.com/ferrysync/ferry/backends"
)

// Filter decides which paths a sync leaves alone, with gitignore-style
// patterns:
//
//   - a pattern without a slash matches the name at any depth ("*.log");
//   - a pattern with a slash is anchored at the root ("docs/*.md"), and so is
//     one with a leading slash ("/build");
//   - a trailing slash matches directories only ("node_modules/");
//   - "**" matches any number of directories ("**/tmp/**"); a trailing "/**"
//     also matches the directory itself;
//   - a leading "!" re-includes what an earlier pattern excluded; the last
//     pattern that matches wins ("*.log", "!keep.log");
//   - an excluded directory excludes everything under it, and no "!" pattern
//     can bring back a path whose parent directory is excluded.
//
// ferry's partial files (backends.IsPartialName) are always excluded. A Filter
// is immutable and safe for concurrent use.
type Filter struct {
	rules []rule
}

type rule struct {
	text     string // the pattern as given, for messages
	glob     string // what doublestar matches, without !, leading or trailing /
	match    func(r *rule, s string) bool
	negate   bool
	dirOnly  bool
	anchored bool // match the whole path, else the last element
}

// NewFilter compiles patterns. An empty or malformed pattern is an error
// naming it.
func NewFilter(patterns []string) (*Filter, error) {
	f := &Filter{rules: make([]rule, 0, len(patterns))}
	for _, p := range patterns {
		r, err := parseRule(p)
		if err != nil {
			return nil, err
		}
		f.rules = append(f.rules, r)
	}
	return f, nil
}

func parseRule(p string) (rule, error) {
	r := rule{text: p}
	g := p
	if strings.HasPrefix(g, "!") {
		r.negate = true
		g = g[1:]
	}
	if strings.HasSuffix(g, "/") {
		r.dirOnly = true
		g = strings.TrimRight(g, "/")
	}
	if strings.HasPrefix(g, "/") {
		r.anchored = true
		g = strings.TrimLeft(g, "/")
	} else if strings.Contains(g, "/") {
		r.anchored = true
	}
	if g == "" {
		return rule{}, fmt.Errorf("exclude pattern %q: matches no name", p)
	}
	if strings.Contains(g, "//") {
		return rule{}, fmt.Errorf("exclude pattern %q: empty path element", p)
	}
	if !doublestar.ValidatePattern(g) {
		return rule{}, fmt.Errorf("exclude pattern %q: malformed (unclosed [ or {, or trailing \\)", p)
	}
	r.glob = g
	// Most patterns are a name, "*.ext" or "prefix*": compare strings for
	// those instead of running the glob matcher on every path. A '*' never
	// spans a '/', and the name that unanchored patterns see holds none.
	const meta = `*?[{\`
	switch {
	case !strings.ContainsAny(g, meta):
		r.match = matchLiteral
	case !r.anchored && len(g) > 1 && g[0] == '*' && !strings.ContainsAny(g[1:], meta):
		r.glob = g[1:]
		r.match = matchSuffix
	case !r.anchored && len(g) > 1 && g[len(g)-1] == '*' && !strings.ContainsAny(g[:len(g)-1], meta):
		r.glob = g[:len(g)-1]
		r.match = matchPrefix
	default:
		r.match = matchGlob
	}
	return r, nil
}

func matchLiteral(r *rule, s string) bool { return s == r.glob }
func matchSuffix(r *rule, s string) bool  { return strings.HasSuffix(s, r.glob) }
func matchPrefix(r *rule, s string) bool  { return strings.HasPrefix(s, r.glob) }

func matchGlob(r *rule, s string) bool {
	// The pattern was validated in NewFilter, so Match cannot fail.
	ok, _ := doublestar.Match(r.glob, s)
	return ok
}

// Excluded reports whether path (slash-separated, relative to the root) is
// excluded. isDir says whether path is a directory, for patterns with a
// trailing slash. A nil *Filter excludes only partial files.
func (f *Filter) Excluded(path string, isDir bool) bool {
	for i := 0; i < len(path); i++ {
		if path[i] == '/' && f.excludedSelf(path[:i], true) {
			return true
		}
	}
	return f.excludedSelf(path, isDir)
}

// excludedSelf decides path on its own, assuming no parent directory is
// excluded. Walks that never descend into an excluded directory use it to
// avoid rechecking every ancestor of every entry.
func (f *Filter) excludedSelf(path string, isDir bool) bool {
	if backends.IsPartialName(path) {
		return true
	}
	if f == nil {
		return false
	}
	_, base := backends.Split(path)
	// The last matching rule wins, so look from the end.
	for i := len(f.rules) - 1; i >= 0; i-- {
		r := &f.rules[i]
		if r.dirOnly && !isDir {
			continue
		}
		subject := base
		if r.anchored {
			subject = path
		}
		if r.match(r, subject) {
			return !r.negate
		}
	}
	return false
}

// Empty reports whether f excludes nothing but partial files.
func (f *Filter) Empty() bool { return f == nil || len(f.rules) == 0 }

// String lists the patterns, for logs.
func (f *Filter) String() string {
	if f.Empty() {
		return "[]"
	}
	texts := make([]string, len(f.rules))
	for i, r := range f.rules {
		texts[i] = r.text
	}
	return "[" + strings.Join(texts, " ") + "]"
}
