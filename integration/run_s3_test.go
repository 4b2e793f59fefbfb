package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends/s3"
	"github.com/ferrysync/ferry/engine"
	"github.com/ferrysync/ferry/integration/ferrybin"
	"github.com/ferrysync/ferry/integration/s3server"
)

// TestRunS3Target runs a YAML job with an s3 target against a real S3
// server: the secret comes from the environment through ${VAR}, the first
// run uploads the tree, a change and a delete reach the bucket on the second
// run, and a third run has nothing to do.
func TestRunS3Target(t *testing.T) {
	ferrybin.Path(t)
	srv := s3server.Start(t, s3server.Options{})
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	write := func(p, content string) {
		t.Helper()
		full := filepath.Join(src, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("index.html", "<h1>hi</h1>")
	write("css/site.css", "body{}")
	write("img/deep/logo.txt", "logo")

	cfg := writeRunConfig(t, tmp, fmt.Sprintf(`jobs:
  - name: site
    source: %q
    targets:
      - name: bucket
        type: s3
        endpoint: %s
        insecure: true
        bucket: %s
        path: mirror
        access_key_id: %s
        secret_access_key: ${FERRY_TEST_S3_SECRET}
`, src, srv.Addr(), srv.Bucket(), srv.AccessKey()))
	run := func(round int) ferrybin.Result {
		t.Helper()
		cmd := ferrybin.Command(t, "run", "--once", "-c", cfg)
		cmd.Env = append(os.Environ(), "FERRY_TEST_S3_SECRET="+srv.SecretKey())
		res := ferrybin.RunCmd(t, 2*time.Minute, cmd)
		if res.ExitCode != 0 {
			t.Fatalf("round %d:\n%v", round, res)
		}
		return res
	}
	listing := func() map[string]int64 {
		t.Helper()
		b, err := s3.New(t.Context(), s3.Config{
			Endpoint: srv.Addr(), Insecure: true, Bucket: srv.Bucket(), Prefix: "mirror",
			AccessKeyID: srv.AccessKey(), SecretAccessKey: srv.SecretKey(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		entries, _, problems, err := engine.ListTarget(t.Context(), b, nil, nil)
		if err != nil || len(problems) > 0 {
			t.Fatalf("list bucket: %v %v", err, problems)
		}
		got := map[string]int64{}
		for _, e := range entries {
			if e.IsRegular() {
				got[e.Path] = e.Size
			}
		}
		return got
	}
	want := func(w map[string]int64) {
		t.Helper()
		got := listing()
		if fmt.Sprint(got) != fmt.Sprint(w) {
			t.Fatalf("bucket holds %v, want %v", got, w)
		}
	}

	run(1)
	want(map[string]int64{"index.html": 11, "css/site.css": 6, "img/deep/logo.txt": 4})

	write("index.html", "<h1>hello again</h1>")
	if err := os.Remove(filepath.Join(src, "css/site.css")); err != nil {
		t.Fatal(err)
	}
	run(2)
	want(map[string]int64{"index.html": 20, "img/deep/logo.txt": 4})

	res := run(3)
	if copied := summaryColumn(t, res.Stdout, "bucket", "COPIED"); copied != "0" {
		t.Errorf("third run copied %s files, want 0:\n%s", copied, res.Stdout)
	}
	if strings.Contains(res.Stdout+res.Stderr, srv.SecretKey()) {
		t.Errorf("the secret key is in ferry's output")
	}
}

// summaryColumn returns the column named col of the row of target in the
// table `ferry run --once` prints.
func summaryColumn(t *testing.T, out, target, col string) string {
	t.Helper()
	var header []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case len(f) > 1 && f[0] == "JOB":
			header = f
		case header != nil && len(f) > 1 && f[1] == target:
			if i := slices.Index(header, col); i >= 0 && i < len(f) {
				return f[i]
			}
		}
	}
	t.Fatalf("no %s column for target %s in:\n%s", col, target, out)
	return ""
}
