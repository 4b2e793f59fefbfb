package bench

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// The test binary doubles as a memory hog for the RSS tests: with
// BENCH_HOG_MIB set it touches that many MiB and exits; with
// BENCH_HOG_VIA_CHILD also set it first starts itself as a child doing so,
// waits for it, and exits, so the hog is a grandchild of the test.
func TestMain(m *testing.M) {
	if v := os.Getenv("BENCH_HOG_MIB"); v != "" {
		os.Exit(hog(v))
	}
	code := m.Run()
	printReport(os.Stdout)
	os.Exit(code)
}

func hog(v string) int {
	if os.Getenv("BENCH_HOG_VIA_CHILD") != "" {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "BENCH_HOG_VIA_CHILD=")
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "hog child:", err)
			return 1
		}
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 2
	}
	b := make([]byte, n<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	// Stay alive long enough for the /proc sampler to see the peak.
	time.Sleep(150 * time.Millisecond)
	if b[len(b)-4096] != 1 {
		return 3
	}
	return 0
}
