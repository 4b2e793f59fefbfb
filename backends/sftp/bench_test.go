package sftp

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

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
			if v, err := strconv.Atoi(os.Getenv("FERRY_CHUNK")); err == nil {
				cfg.ChunkSize = v
			}
			be := dial(b, cfg)
			b.SetBytes(int64(size))
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := range b.N {
				if _, err := be.Upload(context.Background(), fmt.Sprintf("f%d", i), src); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(int64(b.N)*int64(size)>>20), "cpu-ms/MiB")
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
			cpu0 := cpuTime()
			defer func() {
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/1000/float64(int64(b.N)*int64(size)>>20), "cpu-ms/MiB")
			}()
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

// cpuTime is the user and system CPU time of this process, which holds
// both client and server here: a figure the machine's load does not skew
// the way it skews wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
