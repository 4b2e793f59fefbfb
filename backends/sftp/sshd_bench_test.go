package sftp_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends/sftp"
	"github.com/ferrysync/ferry/integration/sshd"
)

// fileSource is a backends.Source over a local file.
type fileSource struct {
	f  *os.File
	fi fs.FileInfo
}

func (s fileSource) ReadAt(p []byte, off int64) (int, error) { return s.f.ReadAt(p, off) }
func (s fileSource) Size() int64                             { return s.fi.Size() }
func (s fileSource) ModTime() time.Time                      { return s.fi.ModTime() }
func (s fileSource) Mode() fs.FileMode                       { return s.fi.Mode() }
func (s fileSource) Check() error                            { return nil }

// benchSize is the file size of the real-sshd benchmark, in MiB
// (FERRY_BENCH_MIB, default 256; the figure is for 1024).
func benchSize() int64 {
	if v, err := strconv.Atoi(os.Getenv("FERRY_BENCH_MIB")); err == nil && v > 0 {
		return int64(v) << 20
	}
	return 256 << 20
}

// BenchmarkSSHDUpload uploads one file to a real OpenSSH sshd on loopback
// (aes128-gcm@openssh.com only) with ferry over one and over two
// connections, and with OpenSSH's own `sftp put`, for comparison. Run with
// -benchtime=1x; it is skipped unless FERRY_SSHD_BENCH=1.
func BenchmarkSSHDUpload(b *testing.B) {
	if os.Getenv("FERRY_SSHD_BENCH") != "1" {
		b.Skip("set FERRY_SSHD_BENCH=1 to run against a real sshd")
	}
	srv := sshd.Start(b, sshd.Options{ExtraConfig: []string{"Ciphers aes128-gcm@openssh.com"}})
	size := benchSize()
	local := filepath.Join(b.TempDir(), "big.bin")
	f, err := os.Create(local)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	cfg := sftp.Config{
		Host: "127.0.0.1", Port: srv.Port(), User: srv.User(), Root: srv.Root(),
		IdentityFiles: []string{srv.ClientKeyPath()}, KnownHostsFile: srv.KnownHostsPath(), SSHConfigFile: "none",
	}
	for _, conns := range []int{1, 2} {
		b.Run(fmt.Sprintf("ferry-%dconn", conns), func(b *testing.B) {
			c := cfg
			c.Connections = conns
			if v, err := strconv.Atoi(os.Getenv("FERRY_CHUNK")); err == nil {
				c.ChunkSize = v
			}
			be, err := sftp.Dial(context.Background(), c)
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			f, _ := os.Open(local)
			defer f.Close()
			fi, _ := f.Stat()
			b.SetBytes(size)
			b.ResetTimer()
			for i := range b.N {
				if _, err := be.Upload(context.Background(), fmt.Sprintf("ferry-%d-%d.bin", conns, i), fileSource{f, fi}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("openssh-sftp-put", func(b *testing.B) {
		b.SetBytes(size)
		for i := range b.N {
			cmd := exec.Command("sftp", "-q", "-b", "-", "-P", strconv.Itoa(srv.Port()), "-i", srv.ClientKeyPath(),
				"-o", "UserKnownHostsFile="+srv.KnownHostsPath(), "-o", "Ciphers=aes128-gcm@openssh.com",
				"-o", "BatchMode=yes", srv.User()+"@127.0.0.1")
			cmd.Stdin = strings.NewReader(fmt.Sprintf("put %s %s/sftp-%d.bin\n", local, srv.Root(), i))
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("sftp put: %v\n%s", err, out)
			}
		}
	})
}
