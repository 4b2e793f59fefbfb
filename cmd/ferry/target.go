package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/local"
	"github.com/ferrysync/ferry/backends/s3"
	"github.com/ferrysync/ferry/backends/sftp"
	"github.com/spf13/pflag"
)

// targetOptions are the flags that shape how a target is opened.
type targetOptions struct {
	fsync  bool
	dryRun bool
	logger *slog.Logger
	// ssh holds the sftp:// flags; nil keeps the backend's defaults.
	ssh *sshFlags
	// s3 holds the s3:// flags; nil keeps the backend's defaults (the
	// endpoint then comes from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL).
	s3 *s3Flags
}

// openers maps a URL scheme to the function that opens such a target;
// openTarget uses it for every spec with "scheme://". Tests add schemes.
var openers = map[string]func(ctx context.Context, spec string, o targetOptions) (backends.Backend, error){
	"file": func(ctx context.Context, spec string, o targetOptions) (backends.Backend, error) {
		return openLocal(strings.TrimPrefix(spec, "file://"), o)
	},
	"sftp": openSFTP,
	"s3":   openS3,
}

// s3Flags are the flags of s3:// targets. Credentials are never flags: they
// come from the AWS environment variables or ~/.aws/credentials.
type s3Flags struct {
	endpoint  string
	region    string
	insecure  bool
	pathStyle bool
}

func (s *s3Flags) register(fl *pflag.FlagSet) {
	fl.StringVar(&s.endpoint, "s3-endpoint", "", "S3 server `URL` or host[:port] for s3:// targets (default AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then AWS)")
	fl.StringVar(&s.region, "s3-region", "", "S3 region (default AWS_REGION, AWS_DEFAULT_REGION, then us-east-1)")
	fl.BoolVar(&s.insecure, "s3-insecure", false, "speak plain HTTP to the S3 server, without TLS (for loopback testing)")
	fl.BoolVar(&s.pathStyle, "s3-path-style", false, "address buckets as endpoint/bucket instead of bucket.endpoint (most self-hosted servers)")
}

// openS3 opens an s3://bucket/prefix target and checks that the bucket
// exists. A malformed URL is a usage error; a missing bucket or refused
// credentials are permanent errors that say so.
func openS3(ctx context.Context, spec string, o targetOptions) (backends.Backend, error) {
	t, err := s3.ParseURL(spec)
	if err != nil {
		return nil, usageError(err)
	}
	cfg := s3.Config{Bucket: t.Bucket, Prefix: t.Prefix, Logger: o.logger}
	if f := o.s3; f != nil {
		cfg.Endpoint, cfg.Region, cfg.Insecure, cfg.PathStyle = f.endpoint, f.region, f.insecure, f.pathStyle
	}
	return s3.New(ctx, cfg)
}

// openSFTP dials an sftp:// target with the --identity, --known-hosts and
// other SSH flags, and the rest from ~/.ssh/config and the defaults of
// sftp.Config. A malformed URL is a
// usage error; an unreachable server or a refused key keeps its class.
func openSFTP(ctx context.Context, spec string, o targetOptions) (backends.Backend, error) {
	t, err := sftp.ParseURL(spec)
	if err != nil {
		return nil, usageError(err)
	}
	cfg := t.Config()
	cfg.Logger = o.logger
	if o.ssh != nil {
		if err := o.ssh.apply(&cfg); err != nil {
			return nil, err
		}
	}
	b, err := sftp.Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// openTarget opens the target named by spec: a local path, or a URL whose
// scheme picks the backend. An unknown scheme or a local path whose parent
// is missing is a usage error (exit 2); a target that cannot be reached
// keeps its class (backends.ErrUnreachable, backends.ErrAuth) in the chain.
// The caller closes the backend.
func openTarget(ctx context.Context, spec string, o targetOptions) (backends.Backend, error) {
	scheme, ok := urlScheme(spec)
	if !ok {
		return openLocal(spec, o)
	}
	if redacted, ok := redactURLPassword(spec); ok {
		// The URL parsers quote the URL in their errors: refuse it here,
		// where the password can be left out of the message.
		switch scheme {
		case "sftp":
			return nil, usageErrorf("sftp URL %q: passwords in URLs are not supported; use a key, ssh-agent or a config file's password_file", redacted)
		case "s3":
			return nil, usageErrorf("s3 url %q: credentials (a password) do not belong in the URL; use the environment or ~/.aws/credentials", redacted)
		}
		return nil, usageErrorf("target %s: a password does not belong in a target URL", redacted)
	}
	open, ok := openers[scheme]
	if !ok {
		return nil, usageErrorf("target %s: unknown scheme %q (want a local path, file://, sftp:// or s3://)", spec, scheme)
	}
	return open(ctx, spec, o)
}

// redactURLPassword reports whether the URL spec holds a password
// (user:password@ before the host) and returns it with the password
// replaced by "***", fit to print.
func redactURLPassword(spec string) (string, bool) {
	scheme, rest, _ := strings.Cut(spec, "://")
	authority, path, slash := strings.Cut(rest, "/")
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return "", false
	}
	user, _, hasPassword := strings.Cut(authority[:at], ":")
	if !hasPassword {
		return "", false
	}
	out := scheme + "://" + user + ":***" + authority[at:]
	if slash {
		out += "/" + path
	}
	return out, true
}

// urlScheme returns the scheme of spec when it is a URL ("name://...").
func urlScheme(spec string) (string, bool) {
	scheme, _, ok := strings.Cut(spec, "://")
	if !ok || scheme == "" {
		return "", false
	}
	for _, r := range scheme {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.') {
			return "", false
		}
	}
	return strings.ToLower(scheme), true
}

// specModifyWindow is how far mtimes may differ on the target spec names
// and count as equal: SFTP version 3 keeps whole seconds, so a file synced
// there reads back with its mtime cut to the second.
func specModifyWindow(spec string) time.Duration {
	if scheme, ok := urlScheme(spec); ok && scheme == "sftp" {
		return time.Second
	}
	return 0
}

// localTargetPath returns the local directory spec names, if it names one.
func localTargetPath(spec string) (string, bool) {
	scheme, ok := urlScheme(spec)
	switch {
	case !ok:
		return spec, true
	case scheme == "file":
		return strings.TrimPrefix(spec, "file://"), true
	}
	return "", false
}

// openLocal opens a local target directory, creating it and any missing
// parents (a fresh checkout's `ferry sync ./examples/site ./ferry-out/site`
// must work), and logs what it created. A dry run creates nothing: a missing
// root is planned as an empty target.
func openLocal(dir string, o targetOptions) (backends.Backend, error) {
	if dir == "" {
		return nil, usageErrorf("target: empty path")
	}
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if o.dryRun {
			return absentTarget{}, nil
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, usageErrorf("target %s: %v", dir, err)
		}
		if o.logger != nil {
			o.logger.Info("created target directory", "path", dir)
		}
	case err != nil:
		return nil, fmt.Errorf("target %s: %w", dir, err)
	case !fi.IsDir():
		return nil, usageErrorf("target %s: not a directory", dir)
	}
	b, err := local.New(dir, local.Options{NoFsync: !o.fsync, Logger: o.logger})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// errTargetInSource marks the nesting that `ferry watch` accepts: the job
// excludes such a target from its source.
var errTargetInSource = errors.New("each run would copy its own output")

// checkNesting refuses a local target inside the source or a source inside
// the target: each run would copy or delete its own output. Both are
// compared after resolving symlinks as far as the paths exist.
func checkNesting(source, target string) error {
	s, err := resolve(source)
	if err != nil {
		return fmt.Errorf("source %s: %w", source, err)
	}
	t, err := resolve(target)
	if err != nil {
		return fmt.Errorf("target %s: %w", target, err)
	}
	switch {
	case s == t:
		return usageErrorf("target %s is the source directory", target)
	case within(t, s):
		return &exitError{code: exitUsage, err: fmt.Errorf("target %s is inside the source %s: %w", target, source, errTargetInSource)}
	case within(s, t):
		return usageErrorf("source %s is inside the target %s", source, target)
	}
	return nil
}

// resolve makes p absolute and resolves symlinks in the longest prefix of
// it that exists.
func resolve(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	for dir := abs; ; dir = filepath.Dir(dir) {
		if r, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(append([]string{r}, rest...)...), nil
		}
		if dir == filepath.Dir(dir) {
			return abs, nil
		}
		rest = append([]string{filepath.Base(dir)}, rest...)
	}
}

// within reports whether p lies strictly below dir.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// absentTarget stands for a local target root that does not exist yet,
// during a dry run: it is empty and accepts no change.
type absentTarget struct{}

func (absentTarget) err(path string) error {
	return fmt.Errorf("target root does not exist (dry run) %q: %w", path, backends.ErrNotExist)
}
func (a absentTarget) Stat(_ context.Context, p string) (backends.FileInfo, error) {
	return backends.FileInfo{}, a.err(p)
}
func (a absentTarget) List(_ context.Context, p string) ([]backends.FileInfo, error) {
	return nil, a.err(p)
}
func (a absentTarget) Mkdir(_ context.Context, p string) error                   { return a.err(p) }
func (a absentTarget) Remove(_ context.Context, p string) error                  { return a.err(p) }
func (a absentTarget) Rename(_ context.Context, from, _ string) error            { return a.err(from) }
func (a absentTarget) SetModTime(_ context.Context, p string, _ time.Time) error { return a.err(p) }
func (a absentTarget) Open(_ context.Context, p string, _ int64) (io.ReadCloser, error) {
	return nil, a.err(p)
}
func (a absentTarget) Upload(_ context.Context, p string, _ backends.Source) (backends.UploadResult, error) {
	return backends.UploadResult{}, a.err(p)
}
func (absentTarget) Close() error { return nil }

var _ backends.Backend = absentTarget{}

// Symlink is there so that a dry run against a missing local root plans
// symlinks as a local target would hold them.
func (a absentTarget) Symlink(_ context.Context, _, p string) error { return a.err(p) }

var _ backends.Symlinker = absentTarget{}
