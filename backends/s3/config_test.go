package s3

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/integration/s3server"
	"github.com/minio/minio-go/v7"
)

// TestCredentials opens the same server with credentials from each place
// they may come from, and with wrong ones.
func TestCredentials(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	home := t.TempDir()
	file := filepath.Join(home, "credentials")
	ini := "[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong\n\n[ferry]\naws_access_key_id = " +
		srv.AccessKey() + "\naws_secret_access_key = " + srv.SecretKey() + "\n"
	if err := os.WriteFile(file, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		keys    [2]string // AccessKeyID, SecretAccessKey in the Config
		profile string
		wantErr error // nil: success
	}{
		{name: "Config", keys: [2]string{srv.AccessKey(), srv.SecretKey()}},
		{name: "Environment", env: map[string]string{"AWS_ACCESS_KEY_ID": srv.AccessKey(), "AWS_SECRET_ACCESS_KEY": srv.SecretKey()}},
		{name: "SharedFileProfileFromEnv", env: map[string]string{"AWS_SHARED_CREDENTIALS_FILE": file, "AWS_PROFILE": "ferry"}},
		{name: "SharedFileProfileFromConfig", env: map[string]string{"AWS_SHARED_CREDENTIALS_FILE": file}, profile: "ferry"},
		{name: "SharedFileDefaultProfileWrong", env: map[string]string{"AWS_SHARED_CREDENTIALS_FILE": file}, wantErr: backends.ErrAuth},
		{name: "WrongSecret", keys: [2]string{srv.AccessKey(), "not-the-secret"}, wantErr: backends.ErrAuth},
		{name: "UnknownKeyID", keys: [2]string{"nobody", srv.SecretKey()}, wantErr: backends.ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY",
				"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			t.Setenv("HOME", home)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c := testConfig(srv)
			c.AccessKeyID, c.SecretAccessKey, c.CredentialsProfile = tt.keys[0], tt.keys[1], tt.profile
			b, err := New(t.Context(), c)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				b.Close()
				return
			}
			if !errors.Is(err, tt.wantErr) || !backends.IsPermanent(err) {
				t.Fatalf("New = %v; want a permanent error wrapping %v", err, tt.wantErr)
			}
		})
	}
}

func TestEndpointFromEnvironment(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ENDPOINT_URL", srv.URL())
	c := testConfig(srv)
	c.Endpoint = ""
	b := newTestBackend(t, c)
	if _, err := b.List(t.Context(), ""); err != nil {
		t.Fatalf("List through AWS_ENDPOINT_URL: %v", err)
	}
}

func TestEndpointParsing(t *testing.T) {
	tests := []struct {
		name, in   string
		insecure   bool
		host       string
		wantSecure bool
		wantErr    bool
	}{
		{name: "HostDefaultsToTLS", in: "s3.example.com", host: "s3.example.com", wantSecure: true},
		{name: "HostInsecure", in: "127.0.0.1:9000", insecure: true, host: "127.0.0.1:9000"},
		{name: "HTTPURL", in: "http://127.0.0.1:9000", host: "127.0.0.1:9000"},
		{name: "HTTPSURL", in: "https://s3.example.com/", host: "s3.example.com", wantSecure: true},
		{name: "OtherScheme", in: "ftp://x", wantErr: true},
		{name: "WithPath", in: "https://x/y", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, secure, err := endpointHost(tt.in, tt.insecure)
			if (err != nil) != tt.wantErr || (err == nil && (host != tt.host || secure != tt.wantSecure)) {
				t.Fatalf("endpointHost(%q, %v) = %q, %v, %v", tt.in, tt.insecure, host, secure, err)
			}
		})
	}
}

// TestPrefixDirectories uses objects written by another client, without
// directory markers: their prefixes are directories to Stat and List, and
// a directory rename moves every object under it.
func TestPrefixDirectories(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	c := testConfig(srv)
	b := newTestBackend(t, c)
	cl, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"x/y/z.txt", "x/top.txt"} {
		if _, err := cl.PutObject(t.Context(), srv.Bucket(), c.Prefix+"/"+k, strings.NewReader(k), int64(len(k)), putOpts()); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"x", "x/y"} {
		if fi, err := b.Stat(t.Context(), p); err != nil || !fi.IsDir() {
			t.Errorf("Stat(%q) = %+v, %v; want a directory", p, fi, err)
		}
	}
	if fi, err := b.Stat(t.Context(), "x/top.txt"); err != nil || !fi.IsRegular() || fi.Size != 9 {
		t.Errorf("Stat(x/top.txt) = %+v, %v", fi, err)
	}
	got := map[string]bool{}
	fis, err := b.List(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	for _, fi := range fis {
		got[fi.Path] = fi.IsDir()
	}
	if len(got) != 2 || !got["x/y"] || got["x/top.txt"] {
		t.Errorf("List(x) = %v; want directory x/y and file x/top.txt", got)
	}
	if err := b.Remove(t.Context(), "x/y"); err == nil {
		t.Errorf("Remove of a non-empty prefix succeeded")
	}
	if err := b.Rename(t.Context(), "x", "w"); err != nil {
		t.Fatalf("Rename of a directory: %v", err)
	}
	for _, p := range []string{"x", "x/y/z.txt"} {
		if _, err := b.Stat(t.Context(), p); !errors.Is(err, backends.ErrNotExist) {
			t.Errorf("Stat(%q) after the rename: %v; want ErrNotExist", p, err)
		}
	}
	r, err := b.Open(t.Context(), "w/y/z.txt", 0)
	if err != nil {
		t.Fatalf("Open(w/y/z.txt) after the rename: %v", err)
	}
	r.Close()
}

func putOpts() minio.PutObjectOptions { return minio.PutObjectOptions{DisableContentSha256: true} }

// TestAutoAddressing leaves PathStyle off: against an IP endpoint the
// bucket cannot be a virtual host, so addressing falls back to path-style
// by itself.
func TestAutoAddressing(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	c := testConfig(srv)
	c.PathStyle = false
	b := newTestBackend(t, c)
	data := []byte("addressed")
	if _, err := b.Upload(t.Context(), "f", backendtestBytes(data)); err != nil {
		t.Fatalf("Upload without PathStyle: %v", err)
	}
	if fi, err := b.Stat(t.Context(), "f"); err != nil || fi.Size != int64(len(data)) {
		t.Fatalf("Stat = %+v, %v", fi, err)
	}
}
