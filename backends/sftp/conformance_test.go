package sftp

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/backendtest"
)

func TestConformance(t *testing.T) {
	e := newEnv(t, serverOpts{})
	n := 0
	backendtest.Run(t, func(t *testing.T) backends.Backend {
		n++
		cfg := e.config()
		cfg.Root = filepath.Join(e.srv.dir, "conformance", time.Now().Format("150405.000000000"))
		if err := os.MkdirAll(cfg.Root, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg.Connections = 2
		return dial(t, cfg)
	}, backendtest.Options{ModTimePrecision: time.Second, LargeFileSize: 16 << 20})
}
