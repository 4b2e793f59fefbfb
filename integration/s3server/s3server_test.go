package s3server

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
)

func TestStartServesAndStops(t *testing.T) {
	s := Start(t, Options{Bucket: "bkt-one"})
	cl, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("hello from the fixture")
	if _, err := cl.PutObject(t.Context(), "bkt-one", "dir/obj", bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put: %v", err)
	}
	// The posix backend keeps the object as a plain file, which the
	// benchmarks rely on to check results.
	got, err := os.ReadFile(filepath.Join(s.Root(), "bkt-one", "dir", "obj"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("object on disk: %q, %v", got, err)
	}
	r, err := cl.GetObject(t.Context(), "bkt-one", "dir/obj", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("get: %q, %v", back, err)
	}
	s.Stop()
	s.Stop() // twice is fine
	if c, err := net.Dial("tcp", s.Addr()); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Stop", s.Addr())
	}
}

func TestNoBucket(t *testing.T) {
	s := Start(t, Options{NoBucket: true})
	cl, err := s.Client()
	if err != nil {
		t.Fatal(err)
	}
	ok, err := cl.BucketExists(t.Context(), s.Bucket())
	if err != nil || ok {
		t.Fatalf("BucketExists(%s) = %v, %v with NoBucket; want false", s.Bucket(), ok, err)
	}
}

// recorder stands in for a test to see whether Start fails or skips it.
type recorder struct {
	testing.TB
	how string
	msg string
}

type stop struct{}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.how, r.msg = "fatal", fmt.Sprintf(format, args...)
	panic(stop{})
}
func (r *recorder) Skipf(format string, args ...any) {
	r.how, r.msg = "skip", fmt.Sprintf(format, args...)
	panic(stop{})
}

func TestMissingBinary(t *testing.T) {
	saved := binary
	binary = "versitygw-not-installed-here"
	defer func() { binary = saved }()
	for _, tc := range []struct {
		name, ci, want string
	}{
		{"CIFails", "true", "fatal"},
		{"ElsewhereSkips", "", "skip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recorder{TB: t}
			func() {
				defer func() {
					if v := recover(); v != nil {
						if _, ok := v.(stop); !ok {
							panic(v)
						}
					}
				}()
				Start(r, Options{})
			}()
			if r.how != tc.want || !strings.Contains(r.msg, "go install github.com/versity/versitygw") {
				t.Fatalf("Start with the binary missing and CI=%q: %s %q; want %s with the install hint", tc.ci, r.how, r.msg, tc.want)
			}
		})
	}
}
