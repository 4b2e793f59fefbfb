package s3

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/ferrysync/ferry/backends/backendtest"
	"github.com/ferrysync/ferry/integration/s3server"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

var prefixes atomic.Int64

// testConfig is a Config for srv under a fresh prefix, with the smallest
// parts S3 (and versitygw) allow, so that tests need less data to have
// several parts.
func testConfig(srv *s3server.Server) Config {
	return Config{
		Bucket:          srv.Bucket(),
		Prefix:          fmt.Sprintf("t%d", prefixes.Add(1)),
		Endpoint:        srv.URL(),
		AccessKeyID:     srv.AccessKey(),
		SecretAccessKey: srv.SecretKey(),
		PathStyle:       true,
		PartSize:        minPartSize,
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

func backendtestBytes(data []byte) *backendtest.Bytes {
	return backendtest.NewBytes(data, backendtest.BaseTime)
}
