package sftp

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/pkg/sftp"
)

// BenchmarkUploadInProcess compares ferry's upload with a plain pkg/sftp
// ReadFrom (concurrent writes, 64 requests in flight) against the
// in-process server. Both sides share this process's CPUs, so the figures
// compare the client paths, not a real server.
func BenchmarkUploadInProcess(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 20} {
		src := newSource(size, 1)
		b.Run(fmt.Sprintf("ferry/%dKiB", size>>10), func(b *testing.B) {
			e := newEnv(b, serverOpts{})
			cfg := e.config()
			cfg.Connections = 1
			be := dial(b, cfg)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := range b.N {
				if _, err := be.Upload(context.Background(), fmt.Sprintf("f%d", i), src); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("pkgsftp-readfrom/%dKiB", size>>10), func(b *testing.B) {
			e := newEnv(b, serverOpts{})
			be := dial(b, e.config())
			c, err := be.get(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			cl, err := sftp.NewClient(c.ssh, sftp.UseConcurrentWrites(true), sftp.MaxConcurrentRequestsPerFile(64))
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := range b.N {
				f, err := cl.Create(filepath.Join(e.root, fmt.Sprintf("g%d", i)))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := f.ReadFrom(io.NewSectionReader(src, 0, src.Size())); err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}
