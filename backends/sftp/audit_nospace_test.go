package sftp

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/pkg/sftp"
)

// TestGenericFailureWithSpaceIsNotNoSpace checks the other half of the
// statvfs rule: a server answers SSH_FX_FAILURE for many faults, a full
// disk among them, so a generic failure may be called "no space" only when
// statvfs@openssh.com confirms that the disk is (nearly) full. Each case
// makes the server answer a generic failure to the upload on a writable
// disk with room to spare; the upload must fail, publish nothing, and not
// claim a full disk.
func TestGenericFailureWithSpaceIsNotNoSpace(t *testing.T) {
	cases := []struct {
		name string
		// fault breaks the upload of src to root/f before it starts; it
		// returns a function that undoes it.
		fault func(t *testing.T, root string, src *memSource) func()
	}{
		{"partial busy as a running program (ETXTBSY)", func(t *testing.T, root string, src *memSource) func() {
			// A partial shorter than the source is resumed: opened for
			// writing, which a file being executed refuses.
			exe, err := os.ReadFile("/bin/sleep")
			if err != nil || int64(len(exe)) >= src.Size() {
				t.Skipf("no /bin/sleep smaller than the source to run as the partial (%v)", err)
			}
			part := filepath.Join(root, backends.PartialName("f", src.Size(), src.ModTime()))
			if err := os.WriteFile(part, exe, 0o700); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(part, "30")
			if err := cmd.Start(); err != nil {
				t.Skipf("cannot run the partial: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
			return func() { cmd.Process.Kill(); cmd.Wait() }
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, serverOpts{})
			b := dial(t, e.config())
			ctx := context.Background()
			src := newSource(400<<10, 21)
			undo := tc.fault(t, e.root, src)
			defer undo()
			free, err := b.FreeSpace(ctx, "")
			if err != nil {
				t.Fatalf("FreeSpace: %v (the in-process server answers statvfs)", err)
			}
			if need := b.window(); free < 4*need {
				t.Skipf("only %d bytes free here: a generic failure could honestly be a full disk", free)
			}
			_, err = b.Upload(ctx, "f", src)
			if err == nil {
				t.Fatal("upload succeeded")
			}
			var se *sftp.StatusError
			if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxFailure {
				t.Fatalf("upload error %v is not the generic SSH_FX_FAILURE this test needs", err)
			}
			if errors.Is(err, backends.ErrNoSpace) || strings.Contains(err.Error(), "no space") {
				t.Errorf("a generic failure with %d bytes free was called a full disk: %v", free, err)
			}
			if _, serr := os.Lstat(filepath.Join(e.root, "f")); serr == nil {
				t.Errorf("a file was published at the final name after a failed upload")
			}
			t.Logf("upload error: %v", err)
		})
	}
}
