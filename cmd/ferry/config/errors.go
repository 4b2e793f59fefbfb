package config

import (
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a config file, at a line and column (both 1-based)
// and a key path like jobs[1].targets[0].keepalive. It never holds a secret.
type Error struct {
	File   string
	Line   int
	Column int
	Key    string // "" for problems of the whole file
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Column > 0 {
		fmt.Fprintf(&b, "%s:%d:%d: ", e.File, e.Line, e.Column)
	} else {
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in file order. Load and Parse
// return it as their error; its Error() prints one problem per line.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find a single *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// position is where a value sits in the file.
type position struct{ line, col int }

func posOf(n *yaml.Node) position {
	if n == nil {
		return position{1, 1}
	}
	p := position{n.Line, n.Column}
	if p.line < 1 {
		p.line = 1
	}
	if p.col < 1 {
		p.col = 1
	}
	return p
}

// collector gathers Errors for one file.
type collector struct {
	file string
	errs Errors
}

// at records a problem; the same problem found twice (a defaults value
// checked for each target) is kept once.
func (c *collector) at(p position, key, format string, args ...any) {
	e := &Error{File: c.file, Line: p.line, Column: p.col, Key: key, Msg: fmt.Sprintf(format, args...)}
	for _, o := range c.errs {
		if *o == *e {
			return
		}
	}
	c.errs = append(c.errs, e)
}

func (c *collector) errorf(n *yaml.Node, key, format string, args ...any) {
	c.at(posOf(n), key, format, args...)
}

// sorted returns the errors in file order, or nil.
func (c *collector) sorted() error {
	if len(c.errs) == 0 {
		return nil
	}
	sort.SliceStable(c.errs, func(i, j int) bool {
		a, b := c.errs[i], c.errs[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return c.errs
}

// didYouMean suggests the known key closest to an unknown one, if any is
// close enough to be a typo.
func didYouMean(key string, known []string) string {
	best, bestD := "", 1<<30
	for _, k := range known {
		if d := editDistance(strings.ToLower(key), k); d < bestD {
			best, bestD = k, d
		}
	}
	limit := 2
	if len(key) <= 4 {
		limit = 1
	}
	if bestD <= limit || (bestD <= 3 && len(key) >= 10) {
		return best
	}
	return ""
}

// editDistance counts the insertions, deletions, substitutions and swaps of
// neighbours that turn a into b (swaps are the commonest typo: nmae).
func editDistance(a, b string) int {
	rows := [3][]int{make([]int, len(b)+1), make([]int, len(b)+1), make([]int, len(b)+1)}
	for j := range rows[0] {
		rows[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		pp, prev, cur := rows[(i+1)%3], rows[(i+2)%3], rows[i%3]
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], pp[j-2]+1)
			}
		}
	}
	return rows[len(a)%3][len(b)]
}
