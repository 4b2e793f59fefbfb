package config

import (
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	env := map[string]string{"A": "alpha", "EMPTY": "", "B_2": "two", "YAML": "x: [1]\ny: *z"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cases := []struct {
		name, in, want string
		refs, literal  bool
		err            string // a part of the expected error; "" for none
	}{
		{"no dollar", "plain", "plain", false, true, ""},
		{"empty", "", "", false, false, ""},
		{"one var", "${A}", "alpha", true, false, ""},
		{"var in text", "x-${A}-y", "x-alpha-y", true, true, ""},
		{"two vars", "${A}${B_2}", "alphatwo", true, false, ""},
		{"empty var", "${EMPTY}", "", true, false, ""},
		{"double dollar", "$$", "$", false, true, ""},
		{"escaped reference", "$${A}", "${A}", false, true, ""},
		{"lone dollar kept", "pa$word", "pa$word", false, true, ""},
		{"trailing dollar", "cost$", "cost$", false, true, ""},
		{"dollar digit", "$5", "$5", false, true, ""},
		{"dollar name without braces", "$A", "$A", false, true, ""},
		{"yaml in value stays text", "${YAML}", "x: [1]\ny: *z", true, false, ""},
		{"unset", "${NOPE}", "", false, false, "environment variable NOPE is not set"},
		{"unterminated", "a${A", "", false, false, "unterminated ${"},
		{"empty name", "${}", "", false, false, "is not a valid variable name"},
		{"dash in name", "${A-B}", "", false, false, "is not a valid variable name"},
		{"digit first", "${1A}", "", false, false, "is not a valid variable name"},
		{"nested", "${${A}}", "", false, false, "is not a valid variable name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, refs, literal, err := expand(c.in, lookup)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("expand(%q) error = %v, want one containing %q", c.in, err, c.err)
				}
				return
			}
			if err != nil || got != c.want || refs != c.refs || literal != c.literal {
				t.Fatalf("expand(%q) = %q refs=%v literal=%v err=%v; want %q refs=%v literal=%v",
					c.in, got, refs, literal, err, c.want, c.refs, c.literal)
			}
		})
	}
}

// A variable's value is text: YAML in it adds no keys, and keys are never
// expanded.
func TestExpandCannotInjectStructure(t *testing.T) {
	f := newFixture(t)
	f.env["NAME"] = "site\n    source: /etc"
	f.env["KEY"] = "name"
	yml := "jobs:\n  - name: x\n    source: ${FERRY_TEST}/src\n    targets:\n      - name: \"${NAME}\"\n        type: local\n        path: ${FERRY_TEST}/out\n      - ${KEY}: y\n        type: local\n        path: ${FERRY_TEST}/out\n"
	_, err := Parse("inject.yaml", []byte(yml), f.lookup)
	if err == nil {
		t.Fatal("want errors, it loaded")
	}
	msg := err.Error()
	for _, want := range []string{
		`inject.yaml:5:15: jobs[0].targets[0].name: "site\n    source: /etc" (from ${NAME}) is not a valid name`,
		`inject.yaml:8:9: jobs[0].targets[1].${KEY}: unknown key`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q:\n%s", want, msg)
		}
	}
}
