package sftp

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ferrysync/ferry/backends"
)

// lockedLog collects log output of concurrent goroutines.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// resumeSize is the source size of TestResumeLeavesHeldPartialBehind, in
// MiB (FERRY_RESUME_MIB, default 6): 100 measures the server-side copy.
func resumeSize() int {
	if v, err := strconv.Atoi(os.Getenv("FERRY_RESUME_MIB")); err == nil && v > 0 {
		return v << 20
	}
	return 6 << 20
}

// openSSHOne is openSSH with a pool of one connection.
func openSSHOne(t *testing.T) (Config, string) {
	cfg, _, root := openSSH(t)
	cfg.Connections = 1
	return cfg, root
}

// TestResumeLeavesHeldPartialBehind resumes a partial that another handle
// (standing in for an abandoned session's) holds open for writing. Where
// the server offers copy-data, the published file must be another inode
// than the held one, so a stale write and chmod through that handle leave
// it as published (nor is a copy an interrupted resume left, held open
// too, written on); where it does not (the in-process pkg/sftp server, or
// OpenSSH with the extension ignored), the upload resumes in place, which
// the same stale write visibly changes, so the test can tell the two apart.
func TestResumeLeavesHeldPartialBehind(t *testing.T) {
	cases := []struct {
		name     string
		start    func(t *testing.T) (Config, string)
		copyOff  bool // ignore the server's copy-data
		wantCopy bool
	}{
		{"in-process pkg/sftp server resumes in place", func(t *testing.T) (Config, string) {
			e := newEnv(t, serverOpts{})
			return e.config(), e.root
		}, false, false},
		{"OpenSSH copies the prefix into a new partial", openSSHOne, false, true},
		{"OpenSSH without copy-data resumes in place", openSSHOne, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, root := tc.start(t)
			var log lockedLog
			cfg.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
			b := dial(t, cfg)
			if tc.copyOff {
				rs := b.slots[0].peek().raw
				if rs == nil || !rs.copyData {
					t.Fatal("the server offers no copy-data to ignore: the case proves nothing")
				}
				rs.copyData = false
			}
			size := resumeSize()
			src := newSource(size, 77)
			good := size - 1<<20 + 12345
			// What an interrupted upload leaves: good bytes, then bytes that
			// differ from the source, within the last window.
			content := append([]byte{}, src.data[:good+4096]...)
			for i := good; i < len(content); i++ {
				content[i] ^= 0xff
			}
			partial := filepath.Join(root, backends.PartialName("f.bin", src.Size(), src.ModTime()))
			if err := os.WriteFile(partial, content, 0o600); err != nil {
				t.Fatal(err)
			}
			held, err := os.OpenFile(partial, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer held.Close()
			if tc.wantCopy {
				// A copy an interrupted resume left, still held open by
				// that attempt's session.
				left, err := copyName(partial)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(left, content[:4096], 0o600); err != nil {
					t.Fatal(err)
				}
				heldCopy, err := os.OpenFile(left, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer heldCopy.Close()
				defer func() {
					hfi, _ := heldCopy.Stat()
					pfi, _ := os.Stat(filepath.Join(root, "f.bin"))
					if os.SameFile(hfi, pfi) {
						t.Error("published file is the copy an interrupted resume left")
					}
				}()
			}

			rawBefore := b.slots[0].peek().raw.written.Load()
			t0 := time.Now()
			res := mustUpload(t, b, "f.bin", src)
			took := time.Since(t0)
			if raw := b.slots[0].peek().raw.written.Load() - rawBefore; raw < res.Sent {
				t.Errorf("the connection's own session wrote %d bytes of the %d sent: the resumed rest went through pkg/sftp", raw, res.Sent)
			}
			t.Logf("resumed %d of %d MiB and sent %d in %v", res.Resumed, size>>20, res.Sent, took.Round(time.Millisecond))
			if res.Resumed != int64(good) || res.Sent != src.Size()-int64(good) {
				t.Errorf("resumed %d and sent %d, want %d and %d", res.Resumed, res.Sent, good, src.Size()-int64(good))
			}
			final := filepath.Join(root, "f.bin")
			if got, err := os.ReadFile(final); err != nil || !bytes.Equal(got, src.data) {
				t.Fatalf("published file differs from the source (%v)", err)
			}
			if ents, _ := os.ReadDir(root); len(ents) != 1 {
				t.Errorf("root holds %d entries, want f.bin alone (a partial left behind?)", len(ents))
			}
			logged := log.String()
			if strings.Contains(logged, "resume by server-side copy") != tc.wantCopy ||
				strings.Contains(logged, "resume in place") == tc.wantCopy {
				t.Errorf("log does not say the resume was done by copy=%v:\n%s", tc.wantCopy, logged)
			}
			for _, line := range strings.Split(logged, "\n") {
				if strings.Contains(line, "server-side copy") {
					t.Log(line)
				}
			}
			hfi, err := held.Stat()
			if err != nil {
				t.Fatal(err)
			}
			pfi, err := os.Stat(final)
			if err != nil {
				t.Fatal(err)
			}
			if same := os.SameFile(hfi, pfi); same == tc.wantCopy {
				t.Errorf("published file is the held partial: %v, want %v", same, !tc.wantCopy)
			}

			// The earlier session's requests arrive late.
			if _, err := held.WriteAt(src.data[:4096], 0); err != nil {
				t.Fatal(err)
			}
			if err := held.Chmod(0o666); err != nil {
				t.Fatal(err)
			}
			after, err := os.Stat(final)
			if err != nil {
				t.Fatal(err)
			}
			changed := !after.ModTime().Equal(src.ModTime()) || after.Mode().Perm() != src.Mode().Perm()
			if changed == tc.wantCopy {
				t.Errorf("after a stale write and chmod the published file has mtime %v mode %v (source %v %v): changed %v, want %v",
					after.ModTime(), after.Mode(), src.ModTime(), src.Mode(), changed, !tc.wantCopy)
			}
		})
	}
}

func TestCopyName(t *testing.T) {
	long := strings.Repeat("é", 200)
	cases := []struct {
		name, path string
	}{
		{"at the root", "f.bin"},
		{"in a directory", "a/b/f.bin"},
		{"a name at the length limit", "d/" + long[:backends.MaxNameLen]},
		{"multi-byte runes cut", "d/x" + long},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			partial := "/root/" + backends.PartialName(tc.path, 10, time.Unix(1, 0))
			a, err := copyName(partial)
			if err != nil {
				t.Fatal(err)
			}
			b, err := copyName(partial)
			if err != nil {
				t.Fatal(err)
			}
			if a == partial || a == b {
				t.Errorf("copies of %s named %s and %s; want a new name each time, not the partial's", partial, a, b)
			}
			dir, base := filepath.Split(a)
			wdir, wbase := filepath.Split(partial)
			if dir != wdir {
				t.Errorf("copy in %s, partial in %s", dir, wdir)
			}
			if !backends.IsPartialName(a) {
				t.Errorf("%s is not a partial name", a)
			}
			if len(base) > backends.MaxNameLen || !utf8.ValidString(base) {
				t.Errorf("name of %d bytes (valid UTF-8: %v)", len(base), utf8.ValidString(base))
			}
			key, ok := backends.PartialKey(wbase)
			if !ok || !strings.HasPrefix(base, key+".") {
				t.Errorf("copy %s does not start with the partial's key %q and a dot", base, key)
			}
		})
	}
	for _, bad := range []string{"f.bin", backends.PartialPrefix + "aside-1-f.bin", backends.PartialPrefix + "0123456789abcdef"} {
		if _, err := copyName("/root/" + bad); err == nil {
			t.Errorf("copyName(%q) gave a name; want an error (no tag)", bad)
		}
	}
}

// lateSource calls late once, the first time the upload reads the source
// at or past at: a moment within the resumed upload's writes.
type lateSource struct {
	*memSource
	at   int64
	once sync.Once
	late func()
}

func (s *lateSource) ReadAt(p []byte, off int64) (int, error) {
	if off >= s.at {
		s.once.Do(s.late)
	}
	return s.memSource.ReadAt(p, off)
}

// TestResumeIgnoresLateRequestsOfEarlierAttempts resumes an upload while
// requests an earlier, abandoned attempt left in flight arrive by name, as
// its session applies them whenever the link delivers them: a rename of
// that attempt's copy of the partial over the partial's name, a chmod and
// a truncate of the partial's name. The file published must be the
// source's all the same, and no partial may be left.
func TestResumeIgnoresLateRequestsOfEarlierAttempts(t *testing.T) {
	cfg, root := openSSHOne(t)
	b := dial(t, cfg)
	if rs := b.slots[0].peek().raw; rs == nil || !rs.copyData {
		t.Fatal("sshd offers no copy-data: the resume this test is about does not run")
	}
	mem := newSource(4<<20, 91)
	good := 1<<20 + 777
	partial := filepath.Join(root, backends.PartialName("f.bin", mem.Size(), mem.ModTime()))
	if err := os.WriteFile(partial, mem.data[:good], 0o600); err != nil {
		t.Fatal(err)
	}
	// The earlier attempt's copy: the same prefix, then garbage, as a
	// resume that was cut after its copy would leave it.
	earlier, err := copyName(partial)
	if err != nil {
		t.Fatal(err)
	}
	junk := append(append([]byte{}, mem.data[:good]...), bytes.Repeat([]byte{0xee}, int(mem.Size())-good)...)
	var lateErrs []error
	src := &lateSource{memSource: mem, at: int64(good) + 1<<20, late: func() {
		// Written now, so that the resume could not have chosen it.
		if err := os.WriteFile(earlier, junk, 0o600); err != nil {
			lateErrs = append(lateErrs, err)
			return
		}
		lateErrs = append(lateErrs, os.Rename(earlier, partial), os.Chmod(partial, 0o644),
			os.Truncate(partial, int64(good)/2))
	}}

	res, err := b.Upload(context.Background(), "f.bin", src)
	if err != nil {
		t.Fatal(err)
	}
	if lateErrs == nil {
		t.Fatal("the late requests were never sent: the upload did not read past the resumed prefix")
	}
	if err := errors.Join(lateErrs...); err != nil {
		t.Fatalf("sending the late requests: %v", err)
	}
	if res.Resumed != int64(good) {
		t.Errorf("resumed from %d, want %d", res.Resumed, good)
	}
	got, err := os.ReadFile(filepath.Join(root, "f.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, mem.data) {
		t.Fatalf("published file differs from the source (%d bytes, want %d): a late request of an earlier attempt reached it", len(got), len(mem.data))
	}
	fi, err := os.Stat(filepath.Join(root, "f.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.ModTime().Equal(mem.ModTime()) || fi.Mode().Perm() != mem.Mode().Perm() {
		t.Errorf("published file has mtime %v mode %v, want %v %v", fi.ModTime(), fi.Mode(), mem.ModTime(), mem.Mode())
	}
	if ents, _ := os.ReadDir(root); len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("root holds %v, want f.bin alone (a partial left behind?)", names)
	}
}

// TestAutoVerifyHashesResumedUploads: by default an upload sent whole is
// checked by its size, and so is one that resumed a prefix short enough to
// be compared whole on resume; one that resumed more by the server's
// SHA-256 of the kept prefix, where the account can run head and
// sha256sum; of the whole file where it can run sha256sum alone (the
// in-process server); and by its size where it can run nothing (no
// read-back of the whole file, which only --verify asks for).
func TestAutoVerifyHashesResumedUploads(t *testing.T) {
	cases := []struct {
		name        string
		start       func(t *testing.T) (Config, string)
		wantResumed string
	}{
		{"OpenSSH hashes the kept prefix", openSSHOne, "sha256-prefix"},
		{"a server without head hashes the whole file", func(t *testing.T) (Config, string) {
			e := newEnv(t, serverOpts{})
			return e.config(), e.root
		}, "sha256"},
		{"a server without commands checks the size", func(t *testing.T) (Config, string) {
			e := newEnv(t, serverOpts{noExec: true})
			return e.config(), e.root
		}, "size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, root := tc.start(t)
			b := dial(t, cfg)
			if b.cfg.Verify != VerifyAuto {
				t.Fatalf("default verify is %q, want auto", b.cfg.Verify)
			}
			fresh := newSource(1<<20, 5)
			if res := mustUpload(t, b, "fresh.bin", fresh); res.Verified != "size" {
				t.Errorf("upload sent whole verified by %q, want size", res.Verified)
			}
			window := b.window()
			for _, rc := range []struct {
				name string
				kept int64
				want string
			}{
				{"short.bin", window, "size"},
				{"long.bin", window + 1, tc.wantResumed},
			} {
				src := newSource(int(window)+3<<20, 6)
				partial := filepath.Join(root, backends.PartialName(rc.name, src.Size(), src.ModTime()))
				if err := os.WriteFile(partial, src.data[:rc.kept], 0o600); err != nil {
					t.Fatal(err)
				}
				res := mustUpload(t, b, rc.name, src)
				if res.Resumed != rc.kept {
					t.Fatalf("%s resumed from %d, want %d", rc.name, res.Resumed, rc.kept)
				}
				if res.Verified != rc.want {
					t.Errorf("%s, resumed from %d (window %d), verified by %q, want %q", rc.name, rc.kept, window, res.Verified, rc.want)
				}
				if got, err := os.ReadFile(filepath.Join(root, rc.name)); err != nil || !bytes.Equal(got, src.data) {
					t.Errorf("published %s differs from the source (%v)", rc.name, err)
				}
			}
		})
	}
}

// TestResumedPrefixDamageIsCaught: a partial whose kept prefix differs from
// the source before the window a resume compares is refused by the check
// of the prefix (OpenSSH) or of the whole file (the in-process server,
// which has no head), and dropped, so the retry starts over and publishes
// the source.
func TestResumedPrefixDamageIsCaught(t *testing.T) {
	cases := []struct {
		name  string
		start func(t *testing.T) (Config, string)
	}{
		{"OpenSSH", openSSHOne},
		{"in-process server", func(t *testing.T) (Config, string) {
			e := newEnv(t, serverOpts{})
			return e.config(), e.root
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, root := tc.start(t)
			b := dial(t, cfg)
			window := b.window()
			src := newSource(int(3*window), 8)
			kept := 2 * window
			content := append([]byte{}, src.data[:kept]...)
			content[1000] ^= 0x55 // far below the window compared on resume
			partial := filepath.Join(root, backends.PartialName("d.bin", src.Size(), src.ModTime()))
			if err := os.WriteFile(partial, content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := b.Upload(context.Background(), "d.bin", src)
			if err == nil || !strings.Contains(err.Error(), "differs") {
				t.Fatalf("resumed upload over a damaged prefix: %v, want a content mismatch", err)
			}
			if _, serr := os.Lstat(filepath.Join(root, "d.bin")); serr == nil {
				t.Fatal("a file with a damaged prefix was published")
			}
			res := mustUpload(t, b, "d.bin", src)
			if res.Resumed != 0 {
				t.Errorf("the retry resumed %d bytes of a partial that proved wrong", res.Resumed)
			}
			if got, err := os.ReadFile(filepath.Join(root, "d.bin")); err != nil || !bytes.Equal(got, src.data) {
				t.Fatalf("published file differs from the source after the retry (%v)", err)
			}
		})
	}
}
