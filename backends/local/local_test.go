package local

import (
	"testing"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/backendtest"
)

func newTestBackend(t *testing.T, opts Options) *Backend {
	t.Helper()
	b, err := New(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts Options
	}{
		{"Durable", Options{}},
		{"NoFsync", Options{NoFsync: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			backendtest.Run(t, func(t *testing.T) backends.Backend { return newTestBackend(t, tt.opts) }, backendtest.Options{})
		})
	}
}
