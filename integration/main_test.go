package integration

import (
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrysync/ferry/integration/ferrybin"
)

func TestMain(m *testing.M) {
	if os.Getenv(relayEnv) != "" {
		os.Exit(relay(os.Args[1:]))
	}
	os.Exit(runTests(m))
}

// runTests is TestMain's body, so that its deferred clean-ups run before
// the process exits.
func runTests(m *testing.M) int {
	// `ferry run` keeps its jobs' state by default: a test that names no
	// state_dir must not leave state files in the home directory.
	if os.Getenv("XDG_STATE_HOME") == "" {
		dir, err := os.MkdirTemp("", "ferry-integration-state-")
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			return 1
		}
		os.Setenv("XDG_STATE_HOME", dir)
		defer os.RemoveAll(dir)
	}
	code := m.Run()
	ferrybin.Remove()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	return code
}

// testSeed returns FERRY_TEST_SEED when set, else a fresh seed, and logs it
// so that a failure can be replayed.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FERRY_TEST_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FERRY_TEST_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with FERRY_TEST_SEED=%d)", seed, seed)
	return seed
}
