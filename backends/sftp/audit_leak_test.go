package sftp

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestCloseLeavesNoGoroutines checks each Backend for leaks on its own, at
// its Close, while its server still runs. The package's goleak check runs
// after every test has ended, when each test server has closed its side of
// every connection, which ends the goroutines of a connection the client
// forgot to close: a Close that skips a connection passes it. Here the
// goroutines running before Dial are the only ones allowed after Close.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	cases := []struct {
		name string
		use  func(t *testing.T, b *Backend)
	}{
		{"dialled, idle", func(*testing.T, *Backend) {}},
		{"small uploads on every connection", func(t *testing.T, b *Backend) {
			var wg sync.WaitGroup
			for i := range 12 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := b.Upload(context.Background(), fmt.Sprintf("f%d", i), newSource(50<<10, uint64(i))); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
		}},
		{"upload split over two connections", func(t *testing.T, b *Backend) {
			b.splitAt, b.splitRTT = 1<<20, 0
			mustUpload(t, b, "big", newSource(4<<20, 3))
			if c := b.slots[1].peek(); c == nil {
				t.Fatal("the second connection was never made")
			}
		}},
		{"failed and cancelled calls", func(t *testing.T, b *Backend) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			b.Upload(ctx, "c", newSource(1<<20, 4))
			b.Stat(context.Background(), "missing")
			b.Remove(context.Background(), "missing")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, serverOpts{})
			cfg := e.config()
			cfg.Connections = 3
			// A keepalive is nearly always in flight, and a loaded machine
			// (-race) may not starve it into declaring the link dead.
			cfg.KeepaliveInterval, cfg.KeepaliveMaxMissed = 50*time.Millisecond, 40
			before := goleak.IgnoreCurrent()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			b, err := Dial(ctx, cfg)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			tc.use(t, b)
			time.Sleep(120 * time.Millisecond)
			if err := b.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := goleak.Find(before); err != nil {
				t.Errorf("goroutines left after Close, with the server still up: %v", err)
			}
		})
	}
}
