package bench

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ferrysync/ferry/integration/s3server"
)

// S3 on loopback, issue 8. ferry and `rclone sync` upload to one real
// versitygw (posix backend, keep-alive on) on 127.0.0.1, each run into a
// fresh key prefix of the same bucket. versitygw stores objects as plain
// files under its root, so the result is checked there with sameTree and
// removed there afterwards, untimed.
//
// ferry reads the endpoint and credentials from the AWS environment
// variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY),
// the same way whether or not the CLI has the --s3-* flags. rclone gets
// its flags; AWS_CA_BUNDLE is blanked for it because the Debian rclone
// refuses to start when that variable names a bundle (an environment
// quirk of these machines, not a setting of the benchmark).

const s3Bucket = "bench"

func startS3(b *testing.B) *s3server.Server {
	return s3server.Start(b, s3server.Options{Bucket: s3Bucket})
}

// s3Tools are ferry with its defaults and rclone sync with its defaults
// for an "Other" S3 provider. dst is the folder versitygw keeps the run's
// prefix in; the prefix is dst relative to the bucket's folder.
func s3Tools(b *testing.B, srv *s3server.Server) []tool {
	bucketDir := filepath.Join(srv.Root(), s3Bucket)
	prefix := func(dst string) string {
		rel, err := filepath.Rel(bucketDir, dst)
		if err != nil {
			b.Fatal(err)
		}
		return filepath.ToSlash(rel)
	}
	bin, err := ferry(b)
	f := tool{name: "ferry"}
	if err != nil {
		f.why = err.Error()
		b.Logf("ferry not measured: %v", err)
	}
	ferryEnv := []string{
		"AWS_ENDPOINT_URL=" + srv.URL(),
		"AWS_ACCESS_KEY_ID=" + srv.AccessKey(),
		"AWS_SECRET_ACCESS_KEY=" + srv.SecretKey(),
		"AWS_REGION=us-east-1",
	}
	f.cmd = func(src, dst string) Command {
		return Command{Name: bin, Args: []string{"sync", "-q", src, "s3://" + s3Bucket + "/" + prefix(dst)}, Env: ferryEnv}
	}
	rcloneFlags := []string{
		"--s3-provider", "Other",
		"--s3-endpoint", srv.URL(),
		"--s3-access-key-id", srv.AccessKey(),
		"--s3-secret-access-key", srv.SecretKey(),
	}
	env := append(rcloneEnv(b), "AWS_CA_BUNDLE=")
	r := tool{name: "rclone", cmd: func(src, dst string) Command {
		args := append([]string{"sync", "-q", src, ":s3:" + s3Bucket + "/" + prefix(dst)}, rcloneFlags...)
		return Command{Name: "rclone", Args: args, Env: env}
	}}
	return []tool{f, r}
}

// s3Dst names a fresh prefix for one run: nothing is created, since a
// prefix exists once something is written under it.
func s3Dst(srv *s3server.Server, scenario string) func(t tool, rep int) string {
	return func(t tool, rep int) string {
		return filepath.Join(srv.Root(), s3Bucket, scenario, fmt.Sprintf("%s-%d", t.name, rep))
	}
}

// BenchmarkS3SmallFiles uploads 10,000 files of 4 KiB in 100 folders.
func BenchmarkS3SmallFiles(b *testing.B) {
	src := smallTree(b)
	srv := startS3(b)
	s := NewScenario("s3 loopback (versitygw posix): 10,000 x 4 KiB")
	s.Want(Ratio{Num: "ferry", Den: "rclone", Info: true})
	register(s)
	runSide(b, s, s3Tools(b, srv), side{src: src, prepare: s3Dst(srv, "s3-small"), check: sameTree, done: asideDst(b)})
	report(b, s)
}

// BenchmarkS3BigFile uploads one large incompressible file (BENCH_BIG_MIB,
// 1 GiB by default) as a multipart upload.
func BenchmarkS3BigFile(b *testing.B) {
	src := bigTree(b)
	srv := startS3(b)
	s := NewScenario(fmt.Sprintf("s3 loopback (versitygw posix): one %d MiB file", bigSize()>>20))
	s.Want(Ratio{Num: "ferry", Den: "rclone", Info: true})
	register(s)
	runSide(b, s, s3Tools(b, srv), side{src: src, prepare: s3Dst(srv, "s3-big"), check: sameTree, done: removeDst})
	report(b, s)
}
