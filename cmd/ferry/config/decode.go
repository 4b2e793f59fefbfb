package config

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder turns yaml.Node values into typed values, recording a problem for
// each value it cannot read and going on, so one run reports them all.
type decoder struct {
	collector
	env  func(string) (string, bool)
	dir  string // directory of the config file, for relative paths
	home string // $HOME, "" when unset

	inlineSecret    *yaml.Node // first secret written in the file itself
	inlineSecretKey string
}

// pair is one key and its value in a mapping.
type pair struct {
	name  string
	key   *yaml.Node
	value *yaml.Node
}

// resolve follows aliases to the anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindName(n *yaml.Node) string {
	switch {
	case n == nil || isNull(n):
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Tag == "!!int" || n.Tag == "!!float":
		return "a number"
	case n.Tag == "!!bool":
		return "a boolean"
	}
	return "a string"
}

// mapping returns the pairs of a mapping node; null counts as empty. Keys
// must be plain strings and may not repeat. YAML merge keys (<<: *anchor,
// or a list of anchors) add the keys of those mappings that the mapping does
// not set itself; the first merged mapping wins over later ones.
func (d *decoder) mapping(n *yaml.Node, key string) ([]pair, bool) {
	return d.mappingDepth(n, key, 0)
}

func (d *decoder) mappingDepth(n *yaml.Node, key string, depth int) ([]pair, bool) {
	n = resolve(n)
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, key, "want a mapping of keys to values, got %s", kindName(n))
		return nil, false
	}
	var out, merged []pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode || isNull(k) {
			d.errorf(n.Content[i], key, "a key must be a plain name, got %s", kindName(k))
			continue
		}
		if k.Value == "<<" && k.Tag == "!!merge" {
			merged = append(merged, d.merge(k, v, key, depth)...)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, join(key, k.Value), "key is repeated (first at line %d)", first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{k.Value, k, v})
	}
	for _, p := range merged {
		if _, set := seen[p.name]; !set {
			seen[p.name] = p.key
			out = append(out, p)
		}
	}
	return out, true
}

// merge reads the value of a << key: one mapping or a list of them.
func (d *decoder) merge(k, v *yaml.Node, key string, depth int) []pair {
	path := join(key, "<<")
	if depth >= 8 {
		d.errorf(k, path, "merges nest too deep")
		return nil
	}
	sources := []*yaml.Node{v}
	if rv := resolve(v); rv != nil && rv.Kind == yaml.SequenceNode {
		sources = rv.Content
	}
	var out []pair
	for _, src := range sources {
		if rs := resolve(src); rs == nil || rs.Kind != yaml.MappingNode {
			d.errorf(src, path, "want a mapping (or a list of them) to merge, got %s", kindName(rs))
			continue
		}
		pairs, _ := d.mappingDepth(src, key, depth+1)
		out = append(out, pairs...)
	}
	return out
}

// sequence returns the items of a list node; null counts as empty.
func (d *decoder) sequence(n *yaml.Node, key string) ([]*yaml.Node, bool) {
	n = resolve(n)
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, key, "want a list (items starting with \"- \"), got %s", kindName(n))
		return nil, false
	}
	return n.Content, true
}

// sval is one scalar after ${VAR} expansion.
type sval struct {
	node    *yaml.Node
	raw     string // as written
	val     string // expanded
	refs    bool   // held a ${VAR}
	literal bool   // held something besides ${VAR} references
	null    bool
}

// show quotes a value for a message, saying where an expanded one came from.
func (s sval) show() string {
	if s.refs {
		return fmt.Sprintf("%q (from %s)", s.val, s.raw)
	}
	return strconv.Quote(s.val)
}

func (d *decoder) scalar(n *yaml.Node, key string) (sval, bool) {
	n = resolve(n)
	if isNull(n) {
		return sval{node: n, null: true}, true
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, key, "want a single value, got %s", kindName(n))
		return sval{}, false
	}
	s := sval{node: n, raw: n.Value}
	var err error
	s.val, s.refs, s.literal, err = expand(n.Value, d.env)
	if err != nil {
		d.errorf(n, key, "%v", err)
		return sval{}, false
	}
	return s, true
}

// typed reads a scalar that must have a value: a key left empty is an
// error for numbers, sizes, durations and booleans, where any default
// would be a guess (max_delete: with nothing is not "no deletes").
func (d *decoder) typed(n *yaml.Node, key, want string) (sval, bool) {
	s, ok := d.scalar(n, key)
	if ok && s.null {
		d.errorf(n, key, "has no value (want %s)", want)
		return sval{}, false
	}
	return s, ok
}

func (d *decoder) str(n *yaml.Node, key string) (string, bool) {
	s, ok := d.scalar(n, key)
	return s.val, ok
}

// secret reads a secret value. Messages never show it, and one written in
// the file itself (not only ${VAR}) is remembered for the permission check.
func (d *decoder) secret(n *yaml.Node, key string) (Secret, bool) {
	n = resolve(n)
	if isNull(n) {
		return "", true
	}
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, key, "want a single value, got %s", kindName(n))
		return "", false
	}
	val, _, literal, err := expand(n.Value, d.env)
	if err != nil {
		// Name the variable, never the text around it.
		msg := "holds a ${ that is not a valid ${VAR} reference (write $$ for a literal $)"
		if errors.Is(err, errUnsetVar) {
			msg = err.Error()
		}
		d.errorf(n, key, "%s", msg)
		return "", false
	}
	if literal && d.inlineSecret == nil {
		d.inlineSecret, d.inlineSecretKey = n, key
	}
	return Secret(val), true
}

func (d *decoder) boolean(n *yaml.Node, key string) (bool, bool) {
	s, ok := d.typed(n, key, "true or false")
	if !ok {
		return false, false
	}
	switch strings.ToLower(s.val) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	d.errorf(n, key, "%s is not a boolean (use true or false)", s.show())
	return false, false
}

func (d *decoder) integer(n *yaml.Node, key string, lo, hi int) (int, bool) {
	s, ok := d.typed(n, key, "a whole number")
	if !ok {
		return 0, false
	}
	var v int64
	var err error
	if s.node.Tag == "!!int" && !s.refs {
		err = s.node.Decode(&v)
	} else {
		v, err = strconv.ParseInt(strings.TrimSpace(s.val), 10, 64)
	}
	if err != nil {
		d.errorf(n, key, "%s is not a whole number", s.show())
		return 0, false
	}
	if v < int64(lo) || v > int64(hi) {
		if hi == math.MaxInt32 {
			d.errorf(n, key, "%d is out of range (at least %d)", v, lo)
		} else {
			d.errorf(n, key, "%d is out of range (%d to %d)", v, lo, hi)
		}
		return 0, false
	}
	return int(v), true
}

func (d *decoder) size(n *yaml.Node, key string, lo, hi int64) (int64, bool) {
	s, ok := d.typed(n, key, "a size, e.g. 32K")
	if !ok {
		return 0, false
	}
	v, err := ParseSize(s.val)
	if err != nil {
		if errors.Is(err, errNotSize) {
			d.errorf(n, key, "%s is not a size (e.g. 4096, 32K, 1MiB)", s.show())
		} else {
			d.errorf(n, key, "%s is not a size: %v", s.show(), err)
		}
		return 0, false
	}
	if v < lo || v > hi {
		d.errorf(n, key, "%s is out of range (%s to %s)", s.show(), FormatSize(lo), FormatSize(hi))
		return 0, false
	}
	return v, true
}

func (d *decoder) rate(n *yaml.Node, key string) (int64, bool) {
	s, ok := d.typed(n, key, "a rate, e.g. 10M; 0 for no limit")
	if !ok {
		return 0, false
	}
	v, err := ParseRate(s.val)
	if err != nil {
		d.errorf(n, key, "%s is not a rate (e.g. 10M or 10MiB/s; 0 for no limit)", s.show())
		return 0, false
	}
	return v, true
}

func (d *decoder) duration(n *yaml.Node, key string) (int64, bool) {
	s, ok := d.typed(n, key, "a duration, e.g. 15s")
	if !ok {
		return 0, false
	}
	if s.node.Tag == "!!int" && s.val != "0" {
		d.errorf(n, key, "%s is not a duration: add a unit (e.g. %ss, 1m30s)", s.show(), s.val)
		return 0, false
	}
	v, err := ParseDuration(s.val)
	if err != nil {
		d.errorf(n, key, "%s is not a duration (e.g. 15s, 1m30s)", s.show())
		return 0, false
	}
	if v < 0 {
		d.errorf(n, key, "%s is negative", s.show())
		return 0, false
	}
	return int64(v), true
}

func (d *decoder) enum(n *yaml.Node, key string, allowed ...string) (string, bool) {
	s, ok := d.scalar(n, key)
	if !ok {
		return "", false
	}
	for _, a := range allowed {
		if s.val == a {
			return a, true
		}
	}
	msg := fmt.Sprintf("%s is not one of %s", s.show(), orList(allowed))
	if s.null {
		msg = fmt.Sprintf("has no value (want %s)", orList(allowed))
	} else if m := didYouMean(s.val, allowed); m != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", m)
	}
	d.errorf(n, key, "%s", msg)
	return "", false
}

// localPath makes a path written in the file absolute: ~/ is $HOME and a
// relative path is taken from the config file's directory.
func (d *decoder) localPath(n *yaml.Node, key, p string) (string, bool) {
	if p == "" {
		return "", true
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		if d.home == "" {
			d.errorf(n, key, "starts with ~ but HOME is not set")
			return "", false
		}
		p = filepath.Join(d.home, p[1:])
	}
	if !filepath.IsAbs(p) {
		p = filepath.Join(d.dir, p)
	}
	return filepath.Clean(p), true
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func orList(xs []string) string {
	switch len(xs) {
	case 0:
		return ""
	case 1:
		return xs[0]
	}
	return strings.Join(xs[:len(xs)-1], ", ") + " or " + xs[len(xs)-1]
}

// unknownKey reports a key the schema does not have, with a hint when it is
// a typo of a known key or belongs at another level.
func (d *decoder) unknownKey(p pair, prefix string, known []string, elsewhere map[string]string) {
	msg := "unknown key"
	if m := didYouMean(p.name, known); m != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", m)
	} else if where, ok := elsewhere[p.name]; ok {
		msg += fmt.Sprintf(" here (%s)", where)
	} else {
		msg += fmt.Sprintf(" (known keys: %s)", strings.Join(known, ", "))
	}
	d.errorf(p.key, join(prefix, p.name), "%s", msg)
}
