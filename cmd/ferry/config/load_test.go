package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A target's own key overrides the defaults block even when it sets the
// zero value, and keys it does not set come from defaults, then built-ins.
func TestDefaultsOverlay(t *testing.T) {
	f := newFixture(t)
	yml := `
defaults:
  fsync: false
  retries: 3
  bwlimit: 1M
  keepalive: 30s
  accept_new_host_key: true
  verify: hash
  identity: ~/.ssh/id_test
jobs:
  - name: j
    source: ${FERRY_TEST}/src
    targets:
      - {name: inherits, type: local, path: "${FERRY_TEST}/out/a"}
      - {name: zeroes, type: local, path: "${FERRY_TEST}/out/b", fsync: true, bwlimit: 0, verify: none}
      - {name: ssh, type: sftp, host: h, path: p, keepalive: 5s, accept_new_host_key: false, identity: ""}
      - {name: ssh2, type: sftp, host: h, path: p}
`
	c, err := Parse("overlay.yaml", []byte(yml), f.lookup)
	if err != nil {
		t.Fatal(err)
	}
	ts := c.Jobs[0].Targets
	type row struct {
		name      string
		got, want any
	}
	for _, r := range []row{
		{"inherits fsync", ts[0].Fsync, false},
		{"inherits retries", ts[0].Retries, 3},
		{"inherits bwlimit", ts[0].BWLimit, int64(1 << 20)},
		{"built-in transfers", ts[0].Transfers, DefaultTransfers},
		{"explicit fsync true", ts[1].Fsync, true},
		{"explicit bwlimit 0", ts[1].BWLimit, int64(0)},
		{"explicit verify none", ts[1].Verify, VerifyNone},
		{"explicit keepalive", ts[2].Keepalive, 5 * time.Second},
		{"explicit empty identity", ts[2].Identity, ""},
		{"inherited identity", ts[3].Identity, filepath.Join(f.root, "home", ".ssh", "id_test")},
		{"explicit accept false", ts[2].AcceptNewHostKey, false},
		{"inherited keepalive", ts[3].Keepalive, 30 * time.Second},
		{"inherited accept", ts[3].AcceptNewHostKey, true},
		{"built-in chunk", ts[3].ChunkSize, int64(DefaultChunkSize)},
	} {
		if r.got != r.want {
			t.Errorf("%s: got %v, want %v", r.name, r.got, r.want)
		}
	}
}

func TestScheduleNext(t *testing.T) {
	f := newFixture(t)
	base := time.Date(2026, 11, 25, 10, 17, 0, 0, time.Local)
	cases := []struct {
		spec string
		want time.Time
	}{
		{"1h", base.Add(time.Hour)},
		{"1d", base.Add(24 * time.Hour)},
		{"0 3 * * *", time.Date(2026, 11, 26, 3, 0, 0, 0, time.Local)},
		{"@hourly", time.Date(2026, 11, 25, 11, 0, 0, 0, time.Local)},
		{"@every 10m", base.Add(10 * time.Minute)},
		{"*/15 * * * *", time.Date(2026, 11, 25, 10, 30, 0, 0, time.Local)},
	}
	for _, c := range cases {
		t.Run(c.spec, func(t *testing.T) {
			yml := "jobs:\n  - name: j\n    source: ${FERRY_TEST}/src\n    schedule: \"" + c.spec + "\"\n    targets:\n      - {name: d, type: local, path: /tmp/x}\n"
			cfg, err := Parse("s.yaml", []byte(yml), f.lookup)
			if err != nil {
				t.Fatal(err)
			}
			s := cfg.Jobs[0].Schedule
			if got := s.Next(base); !got.Equal(c.want) {
				t.Fatalf("Next = %v, want %v", got, c.want)
			}
		})
	}
	if !(Schedule{}).Next(base).IsZero() {
		t.Fatal("zero Schedule has a next time")
	}
}

func TestCheck(t *testing.T) {
	f := newFixture(t)
	for k, v := range f.env {
		t.Setenv(k, v)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(good, "jobs:\n  - name: site\n    source: ${FERRY_TEST}/src\n    watch: true\n    targets:\n      - {name: d, type: local, path: \"${FERRY_TEST}/out\"}\n      - {name: box, url: \"sftp://me@h:2222/srv\"}\n")
	write(bad, "jobs:\n  - name: site\n    source: ${FERRY_TEST}/src\n    targets:\n      - {name: d, type: locl, path: /tmp/x, retries: 0}\n")

	var out bytes.Buffer
	if err := Check(&out, good); err != nil {
		t.Fatal(err)
	}
	want := good + ": ok: 1 job, 2 targets\n" +
		"  site: mirror " + f.root + "/src, watch, 2 targets\n" +
		"    -> d (local " + f.root + "/out)\n" +
		"    -> box (sftp://me@h:2222/srv)\n"
	if out.String() != want {
		t.Errorf("Check output:\n%s\nwant:\n%s", out.String(), want)
	}

	out.Reset()
	err := Check(&out, bad)
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 || out.Len() != 0 {
		t.Fatalf("Check(bad) = %v (%d errors), wrote %q", err, len(es), out.String())
	}
	if es[0].Line != 5 || es[0].Key != "jobs[0].targets[0].type" || !strings.Contains(es[0].Msg, `did you mean "local"?`) {
		t.Errorf("first error: %+v", es[0])
	}
	var one *Error
	if !errors.As(err, &one) || one != es[0] {
		t.Errorf("errors.As(*Error) = %v", one)
	}
}

func BenchmarkParseFull(b *testing.B) {
	f := newFixture(b)
	data, err := os.ReadFile(filepath.Join("testdata", "full.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	name := filepath.Join("testdata", "full.yaml")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(name, data, f.lookup); err != nil {
			b.Fatal(err)
		}
	}
}

// A syntax error costs one parse per line to find the line; this bounds it.
func BenchmarkParseSyntaxError1000Lines(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteString("jobs:\n")
	for i := range 990 {
		fmt.Fprintf(&buf, "  - {name: j%d, source: /, targets: []}\n", i)
	}
	buf.WriteString("  - name: [unclosed\n")
	for b.Loop() {
		if _, err := Parse("big.yaml", buf.Bytes(), nil); err == nil {
			b.Fatal("parsed")
		}
	}
}

// The YAML parser names the line where the enclosing block began; the
// loader reports the line that broke the file, for small files (line by
// line) and large ones (bisection) alike.
func TestSyntaxErrorLine(t *testing.T) {
	big := func(n int) string {
		var b strings.Builder
		b.WriteString("jobs:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - {name: j%d, source: /, targets: []}\n", i)
		}
		b.WriteString("  - name: x\n   bad: indent\n")
		return b.String()
	}
	cases := []struct {
		name, yml string
		line      int
	}{
		{"bad indent", "jobs:\n  - name: a\n    source: /\n   targets: []\n", 4},
		{"tab", "jobs:\n\t- name: a\n", 2},
		{"unclosed flow points at its opening", "jobs:\n  - name: a\n    exclude: [a, b\n    targets: []\n", 3},
		{"unknown anchor", "jobs:\n  - name: a\n    source: *nope\n", 3},
		{"small file, error late", big(20), 23},
		{"large file bisected", big(900), 903},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("s.yaml", []byte(c.yml), nil)
			var es Errors
			if !errors.As(err, &es) || len(es) != 1 {
				t.Fatalf("want one error, got %v", err)
			}
			if es[0].Line != c.line || !strings.Contains(es[0].Msg, "YAML syntax") {
				t.Fatalf("got %v, want line %d", es[0], c.line)
			}
		})
	}
}
