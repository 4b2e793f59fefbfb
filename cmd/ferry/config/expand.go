package config

import (
	"errors"
	"fmt"
	"strings"
)

// expand replaces ${VAR} in one scalar value. $$ is a literal $, and a $ not
// followed by { or $ is kept as written, so secrets with a $ in them need no
// escaping. refs reports whether any ${VAR} was found, and literal whether
// anything other than references remains (used to tell an inline secret
// from one that comes only from the environment).
func expand(s string, env func(string) (string, bool)) (out string, refs, literal bool, err error) {
	if !strings.Contains(s, "$") {
		return s, false, s != "", nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			literal = true
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			literal = true
			i += 2
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", refs, literal, fmt.Errorf("unterminated ${ at offset %d (write $$ for a literal $)", i)
			}
			name := s[i+2 : i+2+end]
			if !validVarName(name) {
				return "", refs, literal, fmt.Errorf("${%s} is not a valid variable name (letters, digits and _; write $$ for a literal $)", name)
			}
			v, ok := env(name)
			if !ok {
				return "", refs, literal, fmt.Errorf("environment variable %s %w", name, errUnsetVar)
			}
			b.WriteString(v)
			refs = true
			i += 2 + end + 1
		default:
			b.WriteByte(c)
			literal = true
			i++
		}
	}
	return b.String(), refs, literal, nil
}

func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// errUnsetVar marks a ${VAR} whose variable is not set: the one expansion
// error whose text (the variable's name) may be shown for a secret value.
var errUnsetVar = errors.New("is not set")
