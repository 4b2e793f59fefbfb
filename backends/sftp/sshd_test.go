package sftp_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/backendtest"
	"github.com/ferrysync/ferry/backends/sftp"
	"github.com/ferrysync/ferry/integration/sshd"
)

// TestConformanceOpenSSH runs the conformance suite against a real OpenSSH
// sshd on 127.0.0.1 (internal-sftp, exec allowed), one fresh root per case.
func TestConformanceOpenSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sshd")
	}
	t.Setenv("SSH_AUTH_SOCK", "")
	srv := sshd.Start(t, sshd.Options{HostKeyTypes: []string{"rsa", "ecdsa"}})
	n := 0
	backendtest.Run(t, func(t *testing.T) backends.Backend {
		n++
		root := filepath.Join(srv.Root(), "c", time.Now().Format("150405.000000000"))
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := sftp.Dial(ctx, sftp.Config{
			Host: "127.0.0.1", Port: srv.Port(), User: srv.User(), Root: root,
			IdentityFiles: []string{srv.ClientKeyPath()}, KnownHostsFile: srv.KnownHostsPath(),
			SSHConfigFile: "none", Connections: 2, Verify: sftp.VerifyHash,
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}, backendtest.Options{ModTimePrecision: time.Second, LargeFileSize: 16 << 20})
}
