package backends

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

// memBackend is the smallest Backend the helpers need: files in a map.
// Methods the helpers do not call return ErrUnsupported.
type memBackend struct{ files map[string][]byte }

func (m *memBackend) Stat(context.Context, string) (FileInfo, error) {
	return FileInfo{}, ErrUnsupported
}
func (m *memBackend) List(context.Context, string) ([]FileInfo, error) { return nil, ErrUnsupported }
func (m *memBackend) Mkdir(context.Context, string) error              { return ErrUnsupported }
func (m *memBackend) Remove(context.Context, string) error             { return ErrUnsupported }
func (m *memBackend) Rename(context.Context, string, string) error     { return ErrUnsupported }
func (m *memBackend) SetModTime(context.Context, string, time.Time) error {
	return ErrUnsupported
}
func (m *memBackend) Upload(context.Context, string, Source) (UploadResult, error) {
	return UploadResult{}, ErrUnsupported
}
func (m *memBackend) Close() error { return nil }

// Open ignores ctx, so that a test sees Hash stop a copy on its own.
func (m *memBackend) Open(_ context.Context, p string, off int64) (io.ReadCloser, error) {
	d, ok := m.files[p]
	if !ok {
		return nil, fmt.Errorf("open %s: %w", p, ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(d[off:])), nil
}

// hashing adds a Hasher whose answer or error the test chooses.
type hashing struct {
	*memBackend
	sum string
	err error
}

func (h *hashing) Hash(context.Context, string) (string, error) { return h.sum, h.err }

// wrapper hides its inner backend's methods behind Unwrap.
type wrapper struct{ Backend }

func (w wrapper) Unwrap() Backend { return w.Backend }

func TestAs(t *testing.T) {
	inner := &hashing{memBackend: &memBackend{}}
	tests := []struct {
		name string
		b    Backend
		want bool
	}{
		{"Direct", inner, true},
		{"ThroughOneWrapper", wrapper{inner}, true},
		{"ThroughTwoWrappers", wrapper{wrapper{inner}}, true},
		{"Lacking", &memBackend{}, false},
		{"WrapperOfLacking", wrapper{&memBackend{}}, false},
		{"Nil", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, ok := As[Hasher](tt.b)
			if ok != tt.want || (ok && h == nil) {
				t.Errorf("As[Hasher] = %v, %v; want ok=%v", h, ok, tt.want)
			}
		})
	}
}

func TestHash(t *testing.T) {
	data := []byte("some content to hash")
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	mem := &memBackend{files: map[string][]byte{"f": data}}
	errBroken := errors.New("hash command failed")
	tests := []struct {
		name    string
		b       Backend
		wantSum string
		wantHow string
		wantErr error
	}{
		{"ReadBack", mem, want, "read-back", nil},
		{"Target", &hashing{mem, "abc", nil}, "abc", "target", nil},
		{"TargetThroughWrapper", wrapper{&hashing{mem, "abc", nil}}, "abc", "target", nil},
		{"UnsupportedFallsBack", &hashing{mem, "", fmt.Errorf("no sha256sum: %w", ErrUnsupported)}, want, "read-back", nil},
		{"OtherErrorReturned", &hashing{mem, "", errBroken}, "", "", errBroken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, how, err := Hash(t.Context(), tt.b, "f")
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Hash error %v, want %v", err, tt.wantErr)
			}
			if got != tt.wantSum || how != tt.wantHow {
				t.Errorf("Hash = %q via %q, want %q via %q", got, how, tt.wantSum, tt.wantHow)
			}
		})
	}
	if _, _, err := Hash(t.Context(), mem, "missing"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Hash of a missing file: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := Hash(ctx, mem, "f"); !errors.Is(err, context.Canceled) {
		t.Errorf("Hash with a cancelled context: %v", err)
	}
}
