package s3

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Target is what an s3:// URL names: a bucket and a key prefix under it.
type Target struct {
	Bucket string
	// Prefix is the target root inside the bucket, without slashes at
	// either end; "" is the whole bucket.
	Prefix string
}

// ParseURL parses s3://bucket[/prefix]. The prefix is checked like any
// other path of ferry's (no "..", no empty elements); one trailing slash is
// allowed. Credentials, queries and fragments in the URL are refused.
func ParseURL(s string) (Target, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Target{}, fmt.Errorf("s3 url %q: %w", s, err)
	}
	switch {
	case u.Scheme != "s3":
		return Target{}, fmt.Errorf("s3 url %q: scheme is not s3", s)
	case u.User != nil:
		return Target{}, fmt.Errorf("s3 url %q: credentials do not belong in the URL; use the environment or ~/.aws/credentials", s)
	case u.RawQuery != "" || u.Fragment != "":
		return Target{}, fmt.Errorf("s3 url %q: a query or fragment is not allowed", s)
	case u.Host == "":
		return Target{}, fmt.Errorf("s3 url %q: no bucket", s)
	}
	prefix := strings.TrimPrefix(u.Path, "/")
	prefix = strings.TrimSuffix(prefix, "/")
	if err := backends.CheckPath(prefix); err != nil {
		return Target{}, fmt.Errorf("s3 url %q: prefix: %w", s, err)
	}
	return Target{Bucket: u.Host, Prefix: prefix}, nil
}

// String formats the target back as an s3:// URL.
func (t Target) String() string {
	if t.Prefix == "" {
		return "s3://" + t.Bucket
	}
	return "s3://" + t.Bucket + "/" + t.Prefix
}

// Config describes one S3 target. Only Bucket is required; the zero value
// of every other field picks the default named beside it.
type Config struct {
	Bucket string
	Prefix string
	// Endpoint is host[:port] or a URL. An http:// URL turns TLS off the
	// same as Insecure; default AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then
	// s3.amazonaws.com.
	Endpoint string
	// Region; default AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1.
	Region string
	// Credentials: when AccessKeyID is empty they come from the AWS
	// environment variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
	// AWS_SESSION_TOKEN), then from the shared credentials file
	// (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile
	// CredentialsProfile, AWS_PROFILE or "default").
	AccessKeyID        string
	SecretAccessKey    string
	SessionToken       string
	CredentialsProfile string
	// PathStyle addresses the bucket as endpoint/bucket; without it the
	// bucket is a virtual host (bucket.endpoint) on AWS and on endpoints
	// that are host names minio-go knows to support it, and path-style
	// elsewhere (IP addresses, localhost).
	PathStyle bool
	// Insecure speaks plain HTTP. TLS is on unless this is set.
	Insecure bool
	// PartSize is the size of a multipart upload's parts, and files up to
	// it go up in one PUT; default 8 MiB, at least 5 MiB (S3's minimum). It
	// grows for files that would need more than 10,000 parts.
	PartSize int64
	// Concurrency is the number of parts of one file sent at once; default 4.
	Concurrency int
	// AbortAfter is how old an unfinished multipart upload must be before
	// CleanupStale aborts it; default 24h.
	AbortAfter time.Duration
	// StallTimeout is how long a connection may move no byte in either
	// direction while a request is sent or its answer awaited before it is
	// closed and the call fails with ErrUnreachable: a link that went dead
	// under an upload otherwise hangs until TCP gives up, many minutes
	// later. Default 2 minutes; it does not apply with a custom Transport.
	StallTimeout time.Duration
	// Transport replaces the HTTP transport (e.g. for a proxy in tests);
	// DialContext only replaces how the default one dials.
	Transport   http.RoundTripper
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger      *slog.Logger
}

const (
	defaultPartSize     = 8 << 20
	minPartSize         = 5 << 20
	maxParts            = 10000
	defaultAbortAfter   = 24 * time.Hour
	defaultStallTimeout = 2 * time.Minute
)

func (c Config) withDefaults() Config {
	if c.Region == "" {
		c.Region = os.Getenv("AWS_REGION")
	}
	if c.Region == "" {
		c.Region = os.Getenv("AWS_DEFAULT_REGION")
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	for _, env := range []string{"AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"} {
		if c.Endpoint == "" {
			c.Endpoint = os.Getenv(env)
		}
	}
	if c.Endpoint == "" {
		c.Endpoint = "s3.amazonaws.com"
	}
	if c.PartSize == 0 {
		c.PartSize = defaultPartSize
	}
	c.PartSize = max(c.PartSize, minPartSize)
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = defaultStallTimeout
	}
	if c.AbortAfter <= 0 {
		c.AbortAfter = defaultAbortAfter
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// credentialsFor builds the credential chain: the config's keys, else the
// environment, else the shared credentials file.
func credentialsFor(c Config) *credentials.Credentials {
	if c.AccessKeyID != "" {
		return credentials.NewStaticV4(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
	}
	file := os.Getenv("AWS_SHARED_CREDENTIALS_FILE")
	if file == "" {
		if home, err := os.UserHomeDir(); err == nil {
			file = filepath.Join(home, ".aws", "credentials")
		}
	}
	profile := c.CredentialsProfile
	if profile == "" {
		profile = os.Getenv("AWS_PROFILE")
	}
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{Filename: file, Profile: profile},
	})
}

// endpointHost splits an endpoint given as a URL into host and whether it
// asks for TLS.
func endpointHost(ep string, insecure bool) (host string, secure bool, err error) {
	secure = !insecure
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return "", false, fmt.Errorf("endpoint %q: %w", ep, err)
		}
		switch u.Scheme {
		case "http":
			secure = false
		case "https":
		default:
			return "", false, fmt.Errorf("endpoint %q: scheme must be http or https", ep)
		}
		if u.Path != "" && u.Path != "/" {
			return "", false, fmt.Errorf("endpoint %q: a path is not supported", ep)
		}
		ep = u.Host
	}
	if ep == "" {
		return "", false, errors.New("empty endpoint")
	}
	return ep, secure, nil
}

// New connects to the server of c and checks that the bucket exists, so
// that a wrong endpoint, credentials or bucket fail here, once, with a
// clear message. Errors are classified like every other call's.
func New(ctx context.Context, c Config) (*Backend, error) {
	if c.Bucket == "" {
		return nil, errors.New("s3: no bucket")
	}
	if err := backends.CheckPath(c.Prefix); err != nil {
		return nil, fmt.Errorf("s3: prefix: %w", err)
	}
	c = c.withDefaults()
	host, secure, err := endpointHost(c.Endpoint, c.Insecure)
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	tr := c.Transport
	var own *http.Transport
	if tr == nil {
		ht, err := minio.DefaultTransport(secure)
		if err != nil {
			return nil, fmt.Errorf("s3: transport: %w", err)
		}
		ht.MaxIdleConnsPerHost = 64
		dial := ht.DialContext
		if c.DialContext != nil {
			dial = c.DialContext
		}
		ht.DialContext = stallDialer(dial, c.StallTimeout)
		// The stall timeout covers a slow answer; a fixed limit on
		// waiting for headers would fail a long CompleteMultipartUpload.
		ht.ResponseHeaderTimeout = 0
		tr, own = ht, ht
	}
	lookup := minio.BucketLookupAuto
	if c.PathStyle {
		lookup = minio.BucketLookupPath
	}
	cl, err := minio.New(host, &minio.Options{
		Creds:        credentialsFor(c),
		Secure:       secure,
		Transport:    retryAfterTransport{tr},
		Region:       c.Region,
		BucketLookup: lookup,
		// One attempt per call: retries belong to the engine, which sees
		// the error's class and the server's Retry-After.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: client for %s: %w", host, err)
	}
	b := &Backend{
		cfg:    c,
		core:   &minio.Core{Client: cl},
		bucket: c.Bucket,
		prefix: c.Prefix,
		log:    c.Logger,
		own:    own,
	}
	// A one-key listing rather than HEAD on the bucket: its error body says
	// which of bucket, key id or signature is wrong, where a HEAD answer
	// has only a status code.
	cctx, slot := withSlot(ctx)
	if _, err := b.hasChildren(cctx, ""); err != nil {
		return nil, b.classify("open", "s3://"+c.Bucket+"/"+c.Prefix+" at "+host, err, slot)
	}
	return b, nil
}

// stallDialer wraps dial so that each read or write on a connection fails
// once it has made no progress for timeout.
func stallDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error), timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &stallConn{Conn: c, timeout: timeout}, nil
	}
}

// stallConn pushes its deadline forward before every read and write, so
// only a connection that stops moving bytes times out. An idle pooled
// connection times out too and is dropped, which costs a new dial.
type stallConn struct {
	net.Conn
	timeout time.Duration
}

func (c *stallConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	return c.Conn.Read(p)
}

// Write moves the read deadline too: a pooled connection's pending read
// began when it went idle, and the answer to this request is awaited now.
func (c *stallConn) Write(p []byte) (int, error) {
	c.Conn.SetDeadline(time.Now().Add(c.timeout))
	return c.Conn.Write(p)
}
