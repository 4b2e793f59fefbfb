package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends/backendtest"
)

// BenchmarkSmallFiles uploads 10,000 files of 4 KiB into 100 directories
// with 32 and 128 goroutines: durable (group commit rounds, each one syncfs;
// DurableFsyncEach: each round fsyncs the batch's files and directories
// at once instead) and with NoFsync.
// PerFileFsync is the same tree written the plain durable way, one file
// fsync and one directory fsync per file, for comparison.
func BenchmarkSmallFiles(b *testing.B) {
	for _, workers := range []int{32, 128} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) { benchSmallFiles(b, workers) })
	}
}

func benchSmallFiles(b *testing.B, workers int) {
	const files, dirs = 10000, 100
	data := backendtest.RandomBytes(4096, 1)
	paths := make([]string, files)
	for i := range paths {
		paths[i] = fmt.Sprintf("d%03d/f%05d", i%dirs, i)
	}
	run := func(b *testing.B, upload func(root string, i int) error) {
		for b.Loop() {
			b.StopTimer()
			root := b.TempDir()
			for d := range dirs {
				if err := os.Mkdir(filepath.Join(root, fmt.Sprintf("d%03d", d)), 0o755); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			jobs := make(chan int, workers)
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for i := range jobs {
						if err := upload(root, i); err != nil {
							b.Error(err)
						}
					}
				})
			}
			for i := range files {
				jobs <- i
			}
			close(jobs)
			wg.Wait()
		}
		b.ReportMetric(float64(files*b.N)/b.Elapsed().Seconds(), "files/s")
	}
	for _, mode := range []struct {
		name      string
		opts      Options
		fsyncEach bool
	}{
		{"Durable", Options{}, false},
		{"DurableFsyncEach", Options{}, true},
		{"NoFsync", Options{NoFsync: true}, false},
	} {
		b.Run(mode.name, func(b *testing.B) {
			backs := map[string]*Backend{}
			var mu sync.Mutex
			rounds := int64(0)
			run(b, func(root string, i int) error {
				mu.Lock()
				be := backs[root]
				if be == nil {
					var err error
					if be, err = New(root, mode.opts); err != nil {
						mu.Unlock()
						return err
					}
					if mode.fsyncEach {
						be.commit.sync = fsyncEach
					}
					backs[root] = be
				}
				mu.Unlock()
				_, err := be.Upload(context.Background(), paths[i], backendtest.NewBytes(data, backendtest.BaseTime))
				return err
			})
			for _, be := range backs {
				if be.commit != nil {
					rounds += be.commit.rounds.Load()
				}
				be.Close()
			}
			if rounds > 0 {
				b.ReportMetric(float64(rounds)/float64(b.N), "syncs/op")
			}
		})
	}
	b.Run("PerFileFsync", func(b *testing.B) {
		run(b, func(root string, i int) error {
			final := filepath.Join(root, paths[i])
			tmp := filepath.Join(filepath.Dir(final), ".tmp-"+filepath.Base(final))
			f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := f.Write(data); err != nil {
				return err
			}
			if err := f.Sync(); err != nil {
				return err
			}
			f.Close()
			if err := os.Rename(tmp, final); err != nil {
				return err
			}
			d, err := os.Open(filepath.Dir(final))
			if err != nil {
				return err
			}
			defer d.Close()
			return d.Sync()
		})
	})
}

// BenchmarkLargeFile uploads one 256 MiB file, durable and with NoFsync.
func BenchmarkLargeFile(b *testing.B) {
	data := backendtest.RandomBytes(256<<20, 2)
	for _, mode := range []struct {
		name string
		opts Options
	}{{"Durable", Options{}}, {"NoFsync", Options{NoFsync: true}}} {
		b.Run(mode.name, func(b *testing.B) {
			be, err := New(b.TempDir(), mode.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			b.SetBytes(int64(len(data)))
			for i := 0; b.Loop(); i++ {
				// A new mtime each time, so no partial is ever resumed.
				src := backendtest.NewBytes(data, backendtest.BaseTime.Add(time.Duration(i)))
				if _, err := be.Upload(context.Background(), "large", src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
