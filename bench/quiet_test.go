package bench

import (
	"math"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseCPUTimes(t *testing.T) {
	cases := []struct {
		name    string
		line    string
		want    cpuTimes
		wantErr bool
	}{
		{"kernel 6", "cpu  1596674 34594 2189152 2096859 73424 0 106685 5550 0 0", cpuTimes{busy: 1596674 + 34594 + 2189152 + 0 + 106685 + 5550, idle: 2096859 + 73424}, false},
		{"one core's line", "cpu0 1 2 3 4 5 6 7 8 0 0", cpuTimes{}, true},
		{"too short", "cpu 1 2 3", cpuTimes{}, true},
		{"not a number", "cpu 1 2 x 4 5 6 7 8", cpuTimes{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseCPUTimes(tc.line)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestBusyShare(t *testing.T) {
	a := cpuTimes{busy: 100, idle: 100}
	if got := busyShare(a, cpuTimes{busy: 130, idle: 200}); math.Abs(got-30.0/130) > 1e-9 {
		t.Fatalf("busyShare = %v, want %v", got, 30.0/130)
	}
	if got := busyShare(a, a); got != 0 {
		t.Fatalf("no time passed: busyShare = %v, want 0", got)
	}
}

// TestQuiesceWaitsForBusyMachine: with every core kept busy, Quiesce waits
// its whole bound.
func TestQuiesceWaitsForBusyMachine(t *testing.T) {
	if testing.Short() {
		t.Skip("spins the CPUs for a second")
	}
	var stop atomic.Bool
	for range 4 {
		go func() {
			for !stop.Load() {
			}
		}()
	}
	waited := Quiesce(time.Second)
	stop.Store(true)
	if waited < time.Second {
		t.Fatalf("Quiesce returned after %v with every core busy; want its bound of 1s", waited)
	}
}
