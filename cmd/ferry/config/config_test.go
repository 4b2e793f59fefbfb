package config

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files of testdata/good and testdata/bad")

// fixture is the filesystem the testdata configs refer to through
// ${FERRY_TEST}; it is made fresh for each test.
type fixture struct {
	root string
	env  map[string]string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	root := t.TempDir()
	for _, dir := range []string{"src/site", "src/docs", "out", "home/.ssh"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]os.FileMode{
		"src/file.txt":           0o644,
		"home/.ssh/id_test":      0o600,
		"home/.ssh/known_hosts":  0o644,
		"home/.ssh/id_test.pass": 0o600,
		"home/.ssh/backup.pass":  0o600,
		"pass":                   0o600,
		"pass-open":              0o644,
	}
	for name, mode := range files {
		p := filepath.Join(root, name)
		if err := os.WriteFile(p, []byte("x\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask may have masked bits
			t.Fatal(err)
		}
	}
	return &fixture{root: root, env: map[string]string{
		"FERRY_TEST": root,
		"HOME":       filepath.Join(root, "home"),
		"SECRET":     "hunter2",
		"PORT":       "2222",
		"EMPTY":      "",
		"NOT_A_PORT": "http",

		"FERRY_WEB2_PASSWORD": "hunter2",
		"FERRY_S3_KEY_ID":     "AKIDEXAMPLE",
		"FERRY_S3_SECRET":     "hunter2",
	}}
}

func (f *fixture) lookup(name string) (string, bool) {
	v, ok := f.env[name]
	return v, ok
}

// normalize makes output independent of where the test runs.
func (f *fixture) normalize(t *testing.T, s string) string {
	t.Helper()
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	repo, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	s = strings.ReplaceAll(s, f.root, "$FERRY_TEST")
	s = strings.ReplaceAll(s, abs, "$TESTDATA")
	return strings.ReplaceAll(s, repo, "$REPO")
}

// The secret every testdata config uses; no output may contain it.
const testSecret = "hunter2"

// TestGolden parses every testdata/good/*.yaml, which must load and whose
// resolved settings must match NAME.golden, and every testdata/bad/*.yaml,
// which must fail with exactly the messages in NAME.golden.
func TestGolden(t *testing.T) {
	f := newFixture(t) // read-only, so the cases share it
	for _, dir := range []string{"good", "bad"} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		min := map[string]int{"good": 5, "bad": 25}[dir]
		if len(files) < min {
			t.Fatalf("testdata/%s holds %d configs, want at least %d", dir, len(files), min)
		}
		for _, file := range files {
			name := strings.TrimSuffix(filepath.Base(file), ".yaml")
			t.Run(dir+"/"+name, func(t *testing.T) {
				data, err := os.ReadFile(file)
				if err != nil {
					t.Fatal(err)
				}
				c, err := Parse(file, data, f.lookup)
				var got string
				switch dir {
				case "good":
					if err != nil {
						t.Fatalf("want it to load, got:\n%v", err)
					}
					var b bytes.Buffer
					c.Describe(&b)
					got = b.String()
				case "bad":
					if err == nil {
						t.Fatalf("want an error, it loaded")
					}
					var es Errors
					if !errors.As(err, &es) {
						t.Fatalf("error is %T, want Errors: %v", err, err)
					}
					got = err.Error() + "\n"
				}
				if strings.Contains(got, testSecret) {
					t.Errorf("output holds the secret %q:\n%s", testSecret, got)
				}
				checkGolden(t, strings.TrimSuffix(file, ".yaml")+".golden", f.normalize(t, got))
			})
		}
	}
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test -update if the change is right)\n--- got:\n%s--- want:\n%s", path, got, want)
	}
}

// TestFullExample loads the commented example of every key through Load.
func TestFullExample(t *testing.T) {
	f := newFixture(t)
	for k, v := range f.env {
		t.Setenv(k, v)
	}
	path := filepath.Join("testdata", "full.yaml")
	c, err := Load(path)
	if err != nil {
		t.Fatalf("full.yaml does not load:\n%v", err)
	}
	var b bytes.Buffer
	c.Describe(&b)
	checkGolden(t, filepath.Join("testdata", "full.golden"), f.normalize(t, b.String()))
}

// TestRepoExample loads the repository's config.example.yaml, once it exists.
func TestRepoExample(t *testing.T) {
	path := filepath.Join("..", "..", "..", "config.example.yaml")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("no %s yet", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(path, data, nil); err != nil {
		t.Fatalf("config.example.yaml does not load:\n%v", err)
	}
}
