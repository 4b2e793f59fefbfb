package s3server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Binary is the command name of the server; it is looked up on PATH, then
// in $(go env GOPATH)/bin and ~/go/bin.
const Binary = "versitygw"

// binary is Binary, a variable so that a test can make it go missing.
var binary = Binary

// InstallHint says how to get the server.
const InstallHint = "install it with `go install github.com/versity/versitygw/cmd/versitygw@v1.8.0` or run `scripts/test-deps.sh` as root"

// readyTimeout bounds how long Start waits for the server to answer.
const readyTimeout = 20 * time.Second

// Options change the server. The zero value makes one bucket, "ferry-test".
type Options struct {
	// Bucket is created at start; default "ferry-test".
	Bucket string
	// NoBucket starts the server without creating any bucket.
	NoBucket bool
}

// Server is a running versitygw. Its methods are safe for concurrent use.
type Server struct {
	addr, access, secret, bucket, root string
	logPath                            string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Find returns the path of the server binary, or an error with the install
// hint when it is not installed.
func Find() (string, error) {
	if p, err := exec.LookPath(binary); err == nil {
		return p, nil
	}
	var dirs []string
	if gp, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		dirs = append(dirs, filepath.Join(string(bytes.TrimSpace(gp)), "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, binary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH or in GOPATH/bin; %s", binary, InstallHint)
}

// Start runs a server for the test t and stops it in t's cleanup. When the
// binary is missing it skips t, or fails it when the environment has
// CI=true; any other failure to start fails t.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := Find()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("s3server: %v", err)
		}
		t.Skipf("s3server: %v", err)
	}
	dir := t.TempDir()
	s := &Server{
		access:  "ferrytest" + randHex(4),
		secret:  randHex(20),
		bucket:  opts.Bucket,
		root:    filepath.Join(dir, "data"),
		logPath: filepath.Join(dir, "versitygw.log"),
		done:    make(chan struct{}),
	}
	if s.bucket == "" {
		s.bucket = "ferry-test"
	}
	if err := os.MkdirAll(s.root, 0o755); err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatalf("s3server: %v", err)
	}
	s.addr = "127.0.0.1:" + strconv.Itoa(port)
	if err := s.start(bin); err != nil {
		t.Fatalf("s3server: %v", err)
	}
	t.Cleanup(s.Stop)
	if err := s.waitReady(); err != nil {
		t.Fatalf("s3server: %v\n%s", err, s.Log())
	}
	if !opts.NoBucket {
		if err := s.MakeBucket(s.bucket); err != nil {
			t.Fatalf("s3server: %v\n%s", err, s.Log())
		}
	}
	return s
}

func (s *Server) start(bin string) error {
	logf, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	// Keep-alive is off by default in versitygw; a client reusing
	// connections is what ferry is measured with.
	cmd := exec.Command(bin, "--access", s.access, "--secret", s.secret, "--port", s.addr, "--keep-alive", "--quiet", "posix", s.root)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY=", "ROOT_SECRET_KEY=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", bin, err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	go func() {
		cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	return nil
}

// waitReady polls until the server answers an HTTP request or exits.
func (s *Server) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	cl := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("%s exited during start-up", binary)
		default:
		}
		if resp, err := cl.Get(s.URL() + "/"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer on %s within %v", binary, s.addr, readyTimeout)
}

// Client returns a minio-go client for the server, for tests that set up
// or inspect the bucket behind ferry's back.
func (s *Server) Client() (*minio.Client, error) {
	return minio.New(s.addr, &minio.Options{
		Creds:        credentials.NewStaticV4(s.access, s.secret, ""),
		Region:       "us-east-1",
		BucketLookup: minio.BucketLookupPath,
	})
}

// MakeBucket creates a bucket.
func (s *Server) MakeBucket(name string) error {
	cl, err := s.Client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		return fmt.Errorf("make bucket %s: %w", name, err)
	}
	return nil
}

// Stop kills the server and waits for it. It is safe to call more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// Addr is "127.0.0.1:PORT".
func (s *Server) Addr() string { return s.addr }

// URL is the endpoint as an http URL.
func (s *Server) URL() string { return "http://" + s.addr }

// AccessKey and SecretKey are the root credentials the server runs with.
func (s *Server) AccessKey() string { return s.access }
func (s *Server) SecretKey() string { return s.secret }

// Bucket is the bucket made at start.
func (s *Server) Bucket() string { return s.bucket }

// Root is the directory the posix backend keeps buckets in: Root()/BUCKET/KEY.
func (s *Server) Root() string { return s.root }

// Log returns what the server has written so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
