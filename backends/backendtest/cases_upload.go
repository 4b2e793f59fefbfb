package backendtest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

func init() {
	register("IncompleteUploadPublishesNothing", testIncomplete)
	register("UploadReplacesFile", testUploadReplaces)
	register("UploadOverDirectoryFails", testUploadOverDir)
	register("OddNamesRoundTrip", testOddNames)
	register("EmptyFile", testEmpty)
	register("LargeFile", testLarge)
	register("ModTimeRoundTrip", testModTime)
	register("ModeRoundTrip", testMode)
}

var errSourceRead = errors.New("test source: read error")

func testIncomplete(t *testing.T, e *env) {
	data := RandomBytes(3<<20+5, 3)
	tests := []struct {
		name    string
		src     func(s backends.Source) backends.Source
		wantErr error // nil: any error
	}{
		{"ReadFailsMidway", func(s backends.Source) backends.Source { return FailAfter(s, 1<<20+7, errSourceRead) }, nil},
		{"ReadFailsAtStart", func(s backends.Source) backends.Source { return FailAfter(s, 0, errSourceRead) }, nil},
		{"EOFBeforeSize", func(s backends.Source) backends.Source { return Short(s, 2<<20) }, backends.ErrSourceChanged},
		{"EOFAtStart", func(s backends.Source) backends.Source { return Short(s, 0) }, backends.ErrSourceChanged},
		{"CheckReportsChange", Changed, backends.ErrSourceChanged},
	}
	for _, tt := range tests {
		for _, old := range []bool{false, true} {
			name := tt.name + "/NoOldFile"
			if old {
				name = tt.name + "/KeepsOldFile"
			}
			t.Run(name, func(t *testing.T) {
				path := "inc/" + strings.ReplaceAll(name, "/", "-")
				if old {
					Upload(t, e.b, path, []byte("old content"), BaseTime.Add(-time.Hour))
				} else if err := e.b.Mkdir(t.Context(), "inc"); err != nil {
					t.Fatal(err)
				}
				res, err := e.b.Upload(t.Context(), path, tt.src(NewBytes(data, BaseTime)))
				if err == nil {
					t.Fatalf("incomplete upload succeeded: %+v", res)
				}
				if tt.wantErr != nil {
					wantErr(t, "incomplete upload", err, tt.wantErr)
				}
				if old {
					WantContent(t, e.b, path, []byte("old content"))
				} else {
					WantNotExist(t, e.b, path)
				}
			})
		}
	}
}

func testUploadReplaces(t *testing.T, e *env) {
	Upload(t, e.b, "f", []byte("a longer old content"), BaseTime)
	Upload(t, e.b, "f", []byte("new"), BaseTime.Add(time.Second))
	WantContent(t, e.b, "f", []byte("new"))
	if got := List(t, e.b, ""); len(got) != 1 {
		t.Errorf("root lists %v after replacing f, want only f", keys(got))
	}
}

func testUploadOverDir(t *testing.T, e *env) {
	mkdir(t, e.b, "d")
	Upload(t, e.b, "d/inside", []byte("x"), BaseTime)
	if _, err := e.b.Upload(t.Context(), "d", NewBytes([]byte("file"), BaseTime)); err == nil {
		t.Fatalf("Upload over a directory succeeded")
	}
	if fi := Stat(t, e.b, "d"); !fi.IsDir() {
		t.Fatalf("d is %v after a refused upload, want the directory", fi.Mode)
	}
	WantContent(t, e.b, "d/inside", []byte("x"))
	for name := range List(t, e.b, "") {
		if backends.IsPartialName(name) {
			t.Errorf("a refused upload left partial %q", name)
		}
	}
}

// OddNames are names every backend must carry unchanged.
var OddNames = []string{
	"plain.txt",
	"with space",
	" leading and trailing space ",
	"-leading-dash",
	"--",
	"#hash",
	"100%",
	"%41%2F",
	`quote"double`,
	"quote'single",
	"back\\slash",
	"tab-less~tilde",
	"ünïcödé-ñ",
	"日本語のファイル",
	"emoji-🚢",
	"a:colon;semi|pipe*star?q<lt>gt",
	".hidden",
	"..dots",
	strings.Repeat("é", 127) + "x", // 255 bytes
	strings.Repeat("n", 255),
}

func testOddNames(t *testing.T, e *env) {
	ctx := t.Context()
	dir := "odd dir ü"
	if err := e.b.Mkdir(ctx, dir+"/ñested #2"); err != nil {
		t.Fatal(err)
	}
	for i, name := range OddNames {
		if err := backends.CheckName(name); err != nil {
			t.Fatalf("test name %q fails CheckName: %v", name, err)
		}
		Upload(t, e.b, backends.Join(dir, name), []byte(name), BaseTime.Add(time.Duration(i)*time.Second))
	}
	Upload(t, e.b, dir+"/ñested #2/-x", []byte("nested"), BaseTime)
	got := List(t, e.b, dir)
	if len(got) != len(OddNames)+1 {
		t.Errorf("List(%q) has %d entries, want %d", dir, len(got), len(OddNames)+1)
	}
	for i, name := range OddNames {
		p := backends.Join(dir, name)
		fi, ok := got[name]
		if !ok {
			t.Errorf("List lacks %q", name)
			continue
		}
		if fi.Size != int64(len(name)) || !e.sameTime(fi.ModTime, BaseTime.Add(time.Duration(i)*time.Second)) {
			t.Errorf("List entry %q: size %d mtime %v", name, fi.Size, fi.ModTime)
		}
		WantContent(t, e.b, p, []byte(name))
	}
	WantContent(t, e.b, dir+"/ñested #2/-x", []byte("nested"))
	// Names CheckName refuses never reach the target.
	for _, bad := range []string{"new\nline", "carriage\rreturn", "nul\x00", strings.Repeat("x", 256)} {
		_, err := e.b.Upload(ctx, backends.Join(dir, bad), NewBytes([]byte("x"), BaseTime))
		wantErr(t, "Upload of name "+bad, err, backends.ErrUnsafePath)
	}
	if n := len(List(t, e.b, dir)); n != len(OddNames)+1 {
		t.Errorf("after refused names the directory has %d entries, want %d", n, len(OddNames)+1)
	}
}

func testEmpty(t *testing.T, e *env) {
	res := Upload(t, e.b, "empty", nil, BaseTime)
	if res.Sent != 0 || res.Resumed != 0 {
		t.Errorf("empty upload reported %+v", res)
	}
	WantContent(t, e.b, "empty", nil)
	Upload(t, e.b, "was-full", []byte("full"), BaseTime)
	Upload(t, e.b, "was-full", []byte{}, BaseTime.Add(time.Second))
	WantContent(t, e.b, "was-full", nil)
}

func testLarge(t *testing.T, e *env) {
	data := RandomBytes(int(e.opts.LargeFileSize), 4)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	res := Upload(t, e.b, "large.bin", data, BaseTime)
	if res.Resumed+res.Sent != int64(len(data)) {
		t.Errorf("upload reported resumed %d + sent %d, want %d bytes", res.Resumed, res.Sent, len(data))
	}
	if v := res.Verified; v != "size" && v != "sha256" && v != "sha256-prefix" && v != "read-back" {
		t.Errorf("upload reported Verified %q, want size, sha256, sha256-prefix or read-back", v)
	}
	got, how, err := backends.Hash(t.Context(), e.b, "large.bin")
	if err != nil {
		t.Fatalf("Hash: %v", err)
	}
	if got != want {
		t.Fatalf("large file hashes to %s (%s), want %s", got, how, want)
	}
	if fi := Stat(t, e.b, "large.bin"); fi.Size != int64(len(data)) {
		t.Fatalf("large file has size %d, want %d", fi.Size, len(data))
	}
}

func testModTime(t *testing.T, e *env) {
	times := []struct {
		name string
		t    time.Time
		// outOfRange: a backend may refuse it with ErrUnsupported (SFTP v3
		// stores unsigned 32-bit seconds), but must not store another time.
		outOfRange bool
	}{
		{"Nanoseconds", time.Date(2024, 2, 29, 12, 0, 0, 987654321, time.UTC), false},
		{"WholeSecond", time.Date(2001, 9, 9, 1, 46, 40, 0, time.UTC), false},
		{"Before1970", time.Date(1965, 5, 1, 0, 0, 0, 500, time.UTC), true},
		{"After2038", time.Date(2100, 1, 1, 0, 0, 0, 1, time.UTC), false},
		{"After2106", time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), true},
		{"LocalZone", time.Date(2020, 6, 1, 8, 0, 0, 42, time.FixedZone("X", 5*3600)), false},
	}
	for _, tt := range times {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.b.Upload(t.Context(), tt.name, NewBytes([]byte(tt.name), tt.t))
			if tt.outOfRange && backends.IsUnsupported(err) {
				WantNotExist(t, e.b, tt.name)
				t.Skipf("backend cannot store %v: %v", tt.t, err)
			}
			if err != nil {
				t.Fatalf("Upload with mtime %v: %v", tt.t, err)
			}
			if got := Stat(t, e.b, tt.name).ModTime; !e.sameTime(got, tt.t) {
				t.Errorf("mtime %v came back as %v", tt.t, got)
			}
		})
	}
}

func testMode(t *testing.T, e *env) {
	if e.opts.NoModes {
		t.Skip("backend declares it keeps no permission bits")
	}
	for _, perm := range []fs.FileMode{0o644, 0o600, 0o755, 0o640, 0o444, 0o700} {
		name := "mode-" + perm.String()
		src := NewBytes([]byte(name), BaseTime)
		src.Perm = perm
		if _, err := e.b.Upload(t.Context(), name, src); err != nil {
			t.Fatalf("Upload with mode %v: %v", perm, err)
		}
		if got := Stat(t, e.b, name).Mode.Perm(); got != perm {
			t.Errorf("mode %v came back as %v", perm, got)
		}
		if c, ok := backends.As[backends.Chmoder](e.b); ok {
			if err := c.Chmod(t.Context(), name, 0o604); err != nil {
				t.Fatalf("Chmod: %v", err)
			}
			if got := Stat(t, e.b, name).Mode.Perm(); got != 0o604 {
				t.Errorf("after Chmod 0604 the mode is %v", got)
			}
		}
	}
}
