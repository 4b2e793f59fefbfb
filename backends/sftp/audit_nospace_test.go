package sftp

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/backends"
	"github.com/pkg/sftp"
)

// TestGenericFailureWithSpaceIsNotNoSpace checks the other half of the
// statvfs rule: a server answers SSH_FX_FAILURE for many faults, a full
// disk among them, so a generic failure may be called "no space" only when
// statvfs@openssh.com confirms that the disk is (nearly) full. Each case
// makes the server answer a generic failure to the upload on a disk with
// room to spare (a read-only folder: the server sends EROFS as
// SSH_FX_FAILURE, as OpenSSH does); the upload must fail, publish nothing,
// and not claim a full disk.
func TestGenericFailureWithSpaceIsNotNoSpace(t *testing.T) {
	cases := []struct {
		name string
		path string
		// fault breaks the server-side root before the upload.
		fault func(t *testing.T, root string)
	}{
		{"read-only folder (EROFS)", "ro/f", func(t *testing.T, root string) {
			if os.Geteuid() != 0 {
				t.Skip("a read-only bind mount needs root")
			}
			dir := filepath.Join(root, "ro")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("mount", "--bind", dir, dir).CombinedOutput(); err != nil {
				t.Skipf("bind mount: %v %s", err, out)
			}
			t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
			if out, err := exec.Command("mount", "-o", "remount,bind,ro", dir).CombinedOutput(); err != nil {
				t.Skipf("read-only remount: %v %s", err, out)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, serverOpts{})
			tc.fault(t, e.root)
			b := dial(t, e.config())
			ctx := context.Background()
			free, err := b.FreeSpace(ctx, "")
			if err != nil {
				t.Fatalf("FreeSpace: %v (the in-process server answers statvfs)", err)
			}
			if need := int64(b.cfg.RequestsInFlight) * int64(b.cfg.ChunkSize); free < 4*need {
				t.Skipf("only %d bytes free here: a generic failure could honestly be a full disk", free)
			}
			_, err = b.Upload(ctx, tc.path, newSource(200<<10, 21))
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
			if _, serr := os.Lstat(filepath.Join(e.root, tc.path)); serr == nil {
				t.Errorf("a file was published at the final name after a failed upload")
			}
			t.Logf("upload error: %v", err)
		})
	}
}
