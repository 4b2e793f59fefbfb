package s3

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/ferrysync/ferry/integration/s3server"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

var prefixes atomic.Int64

// testConfig is a Config for srv under a fresh prefix, with parts of 1 MiB
// so that the resume cases have parts to keep (versitygw does not hold us
// to S3's 5 MiB floor).
func testConfig(srv *s3server.Server) Config {
	return Config{
		Bucket:          srv.Bucket(),
		Prefix:          fmt.Sprintf("t%d", prefixes.Add(1)),
		Endpoint:        srv.URL(),
		AccessKeyID:     srv.AccessKey(),
		SecretAccessKey: srv.SecretKey(),
		PathStyle:       true,
		PartSize:        1 << 20,
		minPartSize:     1 << 20,
	}
}

func newTestBackend(t testing.TB, c Config) *Backend {
	t.Helper()
	b, err := New(t.Context(), c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
