package sftp

import (
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/integration/sshd"
)

// withUmask sets the process umask (which servers started meanwhile
// inherit) until the test ends.
func withUmask(t *testing.T, mask int) {
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}

// createdModes records, through the test hook, the mode each new partial
// has on disk at the moment it exists and before anything is written.
func createdModes(t *testing.T) map[string]fs.FileMode {
	seen := map[string]fs.FileMode{}
	testHookPartialCreated = func(partial string) {
		fi, err := os.Lstat(partial)
		if err != nil {
			t.Errorf("partial %s not on disk after its creation: %v", partial, err)
			return
		}
		if fi.Size() != 0 {
			t.Errorf("partial %s holds %d bytes before the first write", partial, fi.Size())
		}
		seen[filepath.Base(partial)] = fi.Mode()
	}
	t.Cleanup(func() { testHookPartialCreated = nil })
	return seen
}

// TestPartialPrivateFromCreation checks, with a umask that lets anyone read
// new files, that a new partial is owner-only the moment it exists (the
// mode travels in the OPEN, not in a later chmod), on both kinds of server
// and for both ways of writing (one batch, the pipeline), and that the
// published file takes the source's mode.
func TestPartialPrivateFromCreation(t *testing.T) {
	servers := []struct {
		name  string
		start func(t *testing.T) Config
	}{
		{"in-process pkg/sftp server", func(t *testing.T) Config {
			return newEnv(t, serverOpts{}).config()
		}},
		{"OpenSSH sshd", func(t *testing.T) Config {
			if testing.Short() {
				t.Skip("starts sshd")
			}
			t.Setenv("SSH_AUTH_SOCK", "")
			srv := sshd.Start(t, sshd.Options{})
			return Config{
				Host: "127.0.0.1", Port: srv.Port(), User: srv.User(), Root: srv.Root(),
				IdentityFiles: []string{srv.ClientKeyPath()}, KnownHostsFile: srv.KnownHostsPath(),
				SSHConfigFile: "none",
			}
		}},
	}
	files := []struct {
		name string
		size int
	}{
		{"empty.bin", 0},
		{"small.bin", 4 << 10},
		{"batch-limit.bin", batchChunks * DefaultChunkSize},
		{"pipelined.bin", 3<<20 + 17},
	}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			withUmask(t, 0)
			cfg := s.start(t)
			b := dial(t, cfg)
			if b.slots[0].peek().raw == nil {
				t.Fatal("no upload session on this server: the test would prove nothing")
			}
			seen := createdModes(t)
			for i, f := range files {
				t.Run(f.name, func(t *testing.T) {
					src := newSource(f.size, uint64(40+i))
					src.mode = 0o666
					p := "sub/" + f.name
					mustUpload(t, b, p, src)
					part := filepath.Base(b.full(backends.PartialName(p, src.Size(), src.ModTime())))
					mode, ok := seen[part]
					if !ok {
						t.Fatalf("the hook saw no partial %s (saw %v): the test proved nothing", part, seen)
					}
					if mode.Perm() != 0o600 {
						t.Errorf("partial was %v at its creation, want -rw-------", mode)
					}
					fi, err := os.Stat(filepath.Join(cfg.Root, p))
					if err != nil {
						t.Fatal(err)
					}
					if fi.Mode().Perm() != 0o666 {
						t.Errorf("published file is %v, want the source's -rw-rw-rw-", fi.Mode())
					}
				})
			}
		})
	}
}

// TestOneSessionServerFallsBack checks that a server refusing a second
// session still takes uploads (through pkg/sftp alone, the partial made
// private by a chmod), with a warning in the log.
func TestOneSessionServerFallsBack(t *testing.T) {
	e := newEnv(t, serverOpts{maxSessions: 1})
	var log strings.Builder
	cfg := e.config()
	cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
	b := dial(t, cfg)
	if b.slots[0].peek().raw != nil {
		t.Fatal("the server refused no session: the test proved nothing")
	}
	for _, size := range []int{0, 4 << 10, 3 << 20} {
		src := newSource(size, uint64(size))
		mustUpload(t, b, "f.bin", src)
		fi, err := os.Stat(filepath.Join(e.root, "f.bin"))
		if err != nil || fi.Mode().Perm() != src.mode {
			t.Fatalf("published file: %v, %v; want mode %v", fi, err, src.mode)
		}
	}
	if !strings.Contains(log.String(), "one sftp session per connection") {
		t.Errorf("no warning about the single session in the log:\n%s", log.String())
	}
	if _, err := b.Upload(context.Background(), "../x", newSource(1, 1)); err == nil {
		t.Error("an unsafe path was accepted")
	}
}
