package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

func init() {
	// Schemes that fail the way a dead or hostile server does.
	openers["down"] = func(ctx context.Context, spec string, o targetOptions) (backends.Backend, error) {
		return nil, fmt.Errorf("target %s: dial 127.0.0.1:1: connection refused: %w", spec, backends.ErrUnreachable)
	}
	openers["nopng"] = func(ctx context.Context, spec string, o targetOptions) (backends.Backend, error) {
		b, err := openLocal(strings.TrimPrefix(spec, "nopng://"), o)
		return noPNG{b}, err
	}
	openers["dies"] = func(ctx context.Context, spec string, o targetOptions) (backends.Backend, error) {
		b, err := openLocal(strings.TrimPrefix(spec, "dies://"), o)
		return deadUploads{b}, err
	}
	openers["badauth"] = func(ctx context.Context, spec string, o targetOptions) (backends.Backend, error) {
		return nil, fmt.Errorf("target %s: host key mismatch: %w", spec, backends.ErrAuth)
	}
}

// noPNG is a target that refuses every .png upload for good.
type noPNG struct{ backends.Backend }

func (n noPNG) Upload(ctx context.Context, path string, src backends.Source) (backends.UploadResult, error) {
	if strings.HasSuffix(path, ".png") {
		return backends.UploadResult{}, fmt.Errorf("upload %s: %w", path, backends.ErrPermission)
	}
	return n.Backend.Upload(ctx, path, src)
}

func (n noPNG) Unwrap() backends.Backend { return n.Backend }

// deadUploads lists fine but loses the link on every upload.
type deadUploads struct{ backends.Backend }

func (d deadUploads) Upload(ctx context.Context, path string, src backends.Source) (backends.UploadResult, error) {
	return backends.UploadResult{}, fmt.Errorf("upload %s: connection lost: %w", path, backends.ErrUnreachable)
}

func (d deadUploads) Unwrap() backends.Backend { return d.Backend }

func runFerry(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// site makes a small source tree and returns its path.
func site(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "src")
	write(t, src, "index.html", "<h1>hi</h1>")
	write(t, src, "css/a.css", "body{}")
	write(t, src, "img/deep/x.png", strings.Repeat("p", 3000))
	return src
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		// args builds the command line from a fresh source and a target
		// path that does not exist yet.
		args       func(t *testing.T, src, dst string) []string
		want       int
		wantStderr string
		wantStdout string
	}{
		{name: "sync ok", want: 0, wantStdout: "copied 3 files",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", src, dst} }},
		{name: "bwlimit with /s and fsync off", want: 0,
			args: func(t *testing.T, src, dst string) []string {
				return []string{"sync", "--bwlimit", "100M/s", "--fsync=false", "--transfers", "2", src, dst}
			}},
		{name: "file url target", want: 0,
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", src, "file://" + dst} }},
		{name: "no arguments", want: 2, wantStderr: "got 0 arguments",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync"} }},
		{name: "unknown flag", want: 2, wantStderr: "unknown flag",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", "--nope", src, dst} }},
		{name: "bad bwlimit", want: 2, wantStderr: `--bwlimit "10Q"`,
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", "--bwlimit", "10Q", src, dst} }},
		{name: "bad mode", want: 2, wantStderr: "--mode",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", "--mode", "sideways", src, dst} }},
		{name: "bad log format", want: 2, wantStderr: "--log-format",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", "--log-format", "xml", src, dst} }},
		{name: "zero transfers", want: 2, wantStderr: "--transfers",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", "--transfers", "0", src, dst} }},
		{name: "negative retries", want: 2, wantStderr: "--retries",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", "--retries", "-2", src, dst} }},
		{name: "bad exclude", want: 2, wantStderr: "--exclude",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", "--exclude", "[", src, dst} }},
		{name: "missing source", want: 1, wantStderr: "no such directory",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", src + "-nope", dst} }},
		{name: "source is a file", want: 2, wantStderr: "not a directory",
			args: func(t *testing.T, src, dst string) []string {
				return []string{"sync", filepath.Join(src, "index.html"), dst}
			}},
		{name: "target inside source", want: 2, wantStderr: "inside the source",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", src, filepath.Join(src, "out")} }},
		{name: "target is the source", want: 2, wantStderr: "is the source",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", src, src + "/."} }},
		{name: "source inside target", want: 2, wantStderr: "inside the target",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", src, filepath.Dir(src)} }},
		{name: "unknown scheme", want: 2, wantStderr: `unknown scheme "gopher"`,
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", src, "gopher://host/x"} }},
		{name: "malformed sftp url", want: 2, wantStderr: "sftp URL",
			args: func(t *testing.T, src, dst string) []string {
				return []string{"sync", src, "sftp://u:secret@127.0.0.1/x"}
			}},
		{name: "sftp server not listening", want: 3, wantStderr: "ferry: ",
			args: func(t *testing.T, src, dst string) []string {
				return []string{"sync", src, "sftp://nobody@127.0.0.1:1/x"}
			}},
		{name: "target dies during the run", want: 3, wantStderr: "connection lost",
			args: func(t *testing.T, src, dst string) []string {
				return []string{"sync", "-q", "--retries", "0", src, "dies://" + dst}
			}},
		{name: "unreachable target", want: 3, wantStderr: "connection refused",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", src, "down://host/x"} }},
		{name: "authentication failure", want: 3, wantStderr: "host key mismatch",
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", src, "badauth://host/x"} }},
		{name: "a special file is a warning", want: 0, wantStdout: "skipped 1 path",
			args: func(t *testing.T, src, dst string) []string {
				if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o644); err != nil {
					t.Skip("no fifo:", err)
				}
				return []string{"sync", src, dst}
			}},
		{name: "a failed file fails the run", want: 1, wantStderr: "1 path failed", wantStdout: "copied 2 files",
			args: func(t *testing.T, src, dst string) []string {
				return []string{"sync", "--retries", "1", src, "nopng://" + dst}
			}},
		{name: "deletes refused", want: 1, wantStderr: "deletes refused",
			args: func(t *testing.T, src, dst string) []string {
				for _, n := range []string{"a", "b", "c"} {
					write(t, dst, n, "extra")
				}
				return []string{"sync", "--max-delete", "2", src, dst}
			}},
		{name: "quiet prints nothing", want: 0,
			args: func(t *testing.T, src, dst string) []string { return []string{"sync", "-q", src, dst} }},
		{name: "version", want: 0, wantStdout: "ferry ",
			args: func(t *testing.T, src, dst string) []string { return []string{"version"} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := site(t)
			dst := filepath.Join(t.TempDir(), "out", "site")
			code, stdout, stderr := runFerry(t, tc.args(t, src, dst)...)
			if code != tc.want {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.want, stdout, stderr)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr %q lacks %q", stderr, tc.wantStderr)
			}
			if !strings.Contains(stdout, tc.wantStdout) {
				t.Errorf("stdout %q lacks %q", stdout, tc.wantStdout)
			}
			if tc.want != 0 && tc.want != 1 {
				lines := strings.Split(strings.TrimSpace(stderr), "\n")
				if len(lines) == 2 && strings.HasPrefix(lines[1], "Run 'ferry --help'") {
					lines = lines[:1]
				}
				if !strings.HasPrefix(stderr, "ferry: ") || len(lines) != 1 {
					t.Errorf("error is not one 'ferry: ' line (plus a hint): %q", stderr)
				}
			}
			if tc.name == "quiet prints nothing" && (stdout != "" || stderr != "") {
				t.Errorf("quiet run printed %q %q", stdout, stderr)
			}
		})
	}
}

func TestSyncTwiceAndDryRun(t *testing.T) {
	src := site(t)
	dst := filepath.Join(t.TempDir(), "out")

	// A dry run against a target that does not exist yet creates nothing.
	code, stdout, stderr := runFerry(t, "sync", "--dry-run", src, dst)
	if code != 0 || !strings.Contains(stdout, "upload img/deep/x.png (new)") || !strings.Contains(stdout, "would copy 3 files") {
		t.Fatalf("dry run: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("dry run created the target: %v", err)
	}

	if code, stdout, stderr = runFerry(t, "sync", src, dst); code != 0 {
		t.Fatalf("first run: exit %d\n%s%s", code, stdout, stderr)
	}
	for _, rel := range []string{"index.html", "css/a.css", "img/deep/x.png"} {
		want, _ := os.ReadFile(filepath.Join(src, rel))
		got, err := os.ReadFile(filepath.Join(dst, rel))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s not copied: %v", rel, err)
		}
	}
	code, stdout, _ = runFerry(t, "sync", src, dst)
	if code != 0 || !strings.Contains(stdout, "copied 0 files") {
		t.Errorf("second run: exit %d, %q, want nothing copied", code, stdout)
	}

	// Mirror deletes what the source lost; a dry run only lists it.
	os.Remove(filepath.Join(src, "css/a.css"))
	code, stdout, _ = runFerry(t, "sync", "--dry-run", src, dst)
	if code != 0 || !strings.Contains(stdout, "delete css/a.css") {
		t.Errorf("dry run: exit %d %q", code, stdout)
	}
	if _, err := os.Stat(filepath.Join(dst, "css/a.css")); err != nil {
		t.Errorf("dry run deleted: %v", err)
	}
	if code, stdout, _ = runFerry(t, "sync", "--mode", "backup", src, dst); code != 0 || !strings.Contains(stdout, "deleted 0") {
		t.Errorf("backup run: exit %d %q", code, stdout)
	}
	if code, stdout, _ = runFerry(t, "sync", src, dst); code != 0 || !strings.Contains(stdout, "deleted 1") {
		t.Errorf("mirror run: exit %d %q", code, stdout)
	}
}

func TestProgressLogLines(t *testing.T) {
	src := site(t)
	write(t, src, "big", strings.Repeat("b", 200<<10))
	dst := filepath.Join(t.TempDir(), "out")
	start := time.Now()
	code, _, stderr := runFerry(t, "sync", "--progress", "--progress-interval", "50ms", "--bwlimit", "400K",
		"--log-format", "json", src, dst)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, `"msg":"progress"`) || !strings.Contains(stderr, `"eta"`) {
		t.Errorf("no progress lines in %q (run took %v)", stderr, time.Since(start))
	}
}

func TestCheckNesting(t *testing.T) {
	base := t.TempDir()
	os.MkdirAll(filepath.Join(base, "src", "sub"), 0o755)
	os.MkdirAll(filepath.Join(base, "srcfoo"), 0o755)
	os.Symlink(filepath.Join(base, "src"), filepath.Join(base, "alias"))
	tests := []struct {
		name, source, target string
		wantErr              string
	}{
		{name: "siblings", source: "src", target: "out", wantErr: ""},
		{name: "common prefix is not nesting", source: "src", target: "srcfoo", wantErr: ""},
		{name: "target below source", source: "src", target: "src/sub/new", wantErr: "inside the source"},
		{name: "target below source via symlink", source: "src", target: "alias/new", wantErr: "inside the source"},
		{name: "source below target", source: "src/sub", target: "src", wantErr: "inside the target"},
		{name: "same", source: "src", target: "alias", wantErr: "is the source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkNesting(filepath.Join(base, tc.source), filepath.Join(base, tc.target))
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("checkNesting = %v, want %q", err, tc.wantErr)
			}
			if err != nil && exitCode(err) != exitUsage {
				t.Errorf("exit code %d, want 2", exitCode(err))
			}
		})
	}
}

func TestURLScheme(t *testing.T) {
	tests := []struct {
		name, spec, scheme string
		isURL              bool
	}{
		{name: "relative path", spec: "out/site"},
		{name: "absolute path", spec: "/srv/site"},
		{name: "colon in a path", spec: "./a:b"},
		{name: "sftp", spec: "sftp://u@h/x", scheme: "sftp", isURL: true},
		{name: "upper case", spec: "FILE:///x", scheme: "file", isURL: true},
		{name: "not a scheme", spec: "./x://y"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := urlScheme(tc.spec)
			if s != tc.scheme || ok != tc.isURL {
				t.Errorf("urlScheme(%q) = %q %v, want %q %v", tc.spec, s, ok, tc.scheme, tc.isURL)
			}
		})
	}
}
