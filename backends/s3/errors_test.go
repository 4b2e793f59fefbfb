package s3

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// fakeS3 answers a listing of the bucket (so New succeeds) and fails every
// other request with the given S3 error.
func fakeS3(t *testing.T, status int, code string, header map[string]string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Trim(r.URL.Path, "/") == "bkt" {
			// The listing New makes: an empty bucket.
			w.Header().Set("Content-Type", "application/xml")
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bkt</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>`)
			return
		}
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>test says %s</Message><BucketName>bkt</BucketName><Resource>%s</Resource></Error>`, code, code, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func fakeConfig(endpoint string) Config {
	return Config{Bucket: "bkt", Endpoint: endpoint, AccessKeyID: "k", SecretAccessKey: "s", PathStyle: true}
}

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		code       string
		header     map[string]string
		class      error // nil: none of the classes
		permanent  bool
		retryAfter time.Duration
		mention    string
	}{
		{name: "NoSuchKey", status: 404, code: "NoSuchKey", class: backends.ErrNotExist, permanent: true},
		{name: "AccessDenied", status: 403, code: "AccessDenied", class: backends.ErrPermission, permanent: true, mention: `bucket "bkt"`},
		{name: "BadKeyId", status: 403, code: "InvalidAccessKeyId", class: backends.ErrAuth, permanent: true},
		{name: "NoSuchBucket", status: 404, code: "NoSuchBucket", permanent: true, mention: `bucket "bkt" does not exist`},
		{name: "SlowDownWithRetryAfter", status: 503, code: "SlowDown", header: map[string]string{"Retry-After": "7"}, retryAfter: 7 * time.Second},
		{name: "SlowDownNoRetryAfter", status: 503, code: "SlowDown"},
		{name: "InternalError", status: 500, code: "InternalError"},
		{name: "RequestTimeout", status: 400, code: "RequestTimeout"},
		{name: "UnknownServerError", status: 502, code: "BadGateway"},
		{name: "NoSuchUploadRetryable", status: 404, code: "NoSuchUpload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeS3(t, tt.status, tt.code, tt.header)
			b := newTestBackend(t, fakeConfig(srv.URL))
			r, err := b.Open(t.Context(), "some/file", 0)
			if err == nil {
				r.Close()
				t.Fatal("Open succeeded against a failing server")
			}
			if tt.class != nil && !errors.Is(err, tt.class) {
				t.Errorf("error %v does not wrap %v", err, tt.class)
			}
			for _, c := range []error{backends.ErrNotExist, backends.ErrPermission, backends.ErrAuth} {
				if c != tt.class && errors.Is(err, c) {
					t.Errorf("error %v wraps %v too", err, c)
				}
			}
			if got := backends.IsPermanent(err); got != tt.permanent {
				t.Errorf("IsPermanent(%v) = %v, want %v", err, got, tt.permanent)
			}
			d, ok := RetryAfter(err)
			if d != tt.retryAfter || ok != (tt.retryAfter > 0) {
				t.Errorf("RetryAfter = %v, %v; want %v", d, ok, tt.retryAfter)
			}
			if !strings.Contains(err.Error(), "some/file") || (tt.mention != "" && !strings.Contains(err.Error(), tt.mention)) {
				t.Errorf("error %q should name the path and %q", err, tt.mention)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	srv := fakeS3(t, 404, "NoSuchKey", nil)
	b := newTestBackend(t, fakeConfig(srv.URL))
	srv.Close() // the server goes away after the backend connected
	_, err := b.Stat(t.Context(), "f")
	if !errors.Is(err, backends.ErrUnreachable) || backends.IsPermanent(err) {
		t.Fatalf("Stat against a closed server: %v; want retryable ErrUnreachable", err)
	}
}

func TestNewChecksBucket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	missing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	}))
	defer missing.Close()
	tests := []struct {
		name      string
		endpoint  string
		class     error
		permanent bool
		mention   string
	}{
		{"BucketMissing", missing.URL, nil, true, `bucket "bkt" does not exist`},
		{"NobodyListening", "http://" + dead, backends.ErrUnreachable, false, dead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(t.Context(), fakeConfig(tt.endpoint))
			if err == nil {
				t.Fatal("New succeeded")
			}
			if tt.class != nil && !errors.Is(err, tt.class) {
				t.Errorf("error %v does not wrap %v", err, tt.class)
			}
			if backends.IsPermanent(err) != tt.permanent || !strings.Contains(err.Error(), tt.mention) {
				t.Errorf("error %q: permanent %v, want %v and a mention of %q", err, backends.IsPermanent(err), tt.permanent, tt.mention)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name, in string
		want     time.Duration
	}{
		{"Seconds", "12", 12 * time.Second},
		{"HTTPDate", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"PastDate", now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"Garbage", "soon", 0},
		{"Empty", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseRetryAfter(tt.in, now); got != tt.want {
				t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
