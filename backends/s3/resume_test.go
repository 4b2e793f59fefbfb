package s3

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/ferrysync/ferry/backends/backendtest"
	"github.com/ferrysync/ferry/integration/faultproxy"
	"github.com/ferrysync/ferry/integration/s3server"
	"github.com/minio/minio-go/v7"
)

// TestUploadSurvivesResets sends a 300 MiB file through a proxy that resets
// every connection twice mid-way. Each failed attempt is retried the way
// the engine does, with the same backend; the parts already sent are kept,
// so the bytes that reach the server stay within 1.2x the file.
func TestUploadSurvivesResets(t *testing.T) {
	if testing.Short() {
		t.Skip("300 MiB upload")
	}
	srv := s3server.Start(t, s3server.Options{})
	px, err := faultproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	c := testConfig(srv)
	c.Endpoint = "http://" + px.Addr()
	c.PartSize = 0 // the default 8 MiB parts
	b := newTestBackend(t, c)

	const size = 300 << 20
	data := backendtest.RandomBytes(size, 31)
	resetsAt := []int64{90 << 20, 100 << 20} // bytes upstream after the previous cut
	px.ResetAfter(resetsAt[0])
	fired, failures := 0, 0
	var res backends.UploadResult
	for attempt := 1; ; attempt++ {
		res, err = b.Upload(t.Context(), "big", backendtest.NewBytes(data, backendtest.BaseTime))
		if err == nil {
			break
		}
		failures++
		t.Logf("attempt %d: %v (retryable: %v)", attempt, err, !backends.IsPermanent(err))
		if backends.IsPermanent(err) || attempt >= 6 {
			t.Fatalf("upload gave up after %d attempts: %v", attempt, err)
		}
		if !px.Armed() {
			fired++
			if fired < len(resetsAt) {
				px.ResetAfter(resetsAt[fired])
			}
		}
	}
	up := px.BytesUp()
	ratio := float64(up) / size
	t.Logf("%d resets, %d failed attempts; %d bytes upstream for a %d-byte file: %.3fx; last attempt resumed %d sent %d",
		fired, failures, up, size, ratio, res.Resumed, res.Sent)
	if fired != len(resetsAt) {
		t.Fatalf("%d of %d resets fired; the test did not cut the upload twice", fired, len(resetsAt))
	}
	if ratio > 1.2 {
		t.Errorf("%.3fx the file went upstream, want at most 1.2x", ratio)
	}
	if res.Resumed == 0 {
		t.Errorf("the last attempt resumed nothing")
	}
	backendtest.WantContent(t, b, "big", data)
}

// TestResumeAfterRestart cancels a multipart upload mid-way, then lets a
// new Backend (as a restarted process would) find the upload and continue
// it, sending only the parts that were not already on the server.
func TestResumeAfterRestart(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	c := testConfig(srv)
	c.Concurrency = 2
	const mib5 = 5 << 20
	data := backendtest.RandomBytes(6*mib5+123, 41)
	const parts = 7 // 5 MiB parts

	first := newTestBackend(t, c)
	ctx, cancel := context.WithCancel(t.Context())
	var reads atomic.Int64
	src := backendtest.OnRead(backendtest.NewBytes(data, backendtest.BaseTime), func(off int64) {
		if off >= 3*mib5 {
			cancel()
		}
		reads.Add(1)
	})
	_, err := first.Upload(ctx, "f", src)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled upload returned %v, want context.Canceled", err)
	}
	first.Close()
	backendtest.WantNotExist(t, newTestBackend(t, c), "f")

	cl, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	key := c.Prefix + "/f"
	var before int
	for u := range cl.ListIncompleteUploads(t.Context(), srv.Bucket(), key, true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		if u.Key == key {
			r, err := minio.Core{Client: cl}.ListObjectParts(t.Context(), srv.Bucket(), key, u.UploadID, 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			before = len(r.ObjectParts)
		}
	}
	if before == 0 || before >= parts {
		t.Fatalf("the cancelled upload left %d parts on the server, want some of %d", before, parts)
	}

	second := newTestBackend(t, c)
	res, err := second.Upload(t.Context(), "f", backendtest.NewBytes(data, backendtest.BaseTime))
	if err != nil {
		t.Fatalf("resumed upload: %v", err)
	}
	sentParts := (res.Sent + mib5 - 1) / mib5
	t.Logf("%d parts were on the server; the new backend resumed %d bytes and sent %d (%d parts)", before, res.Resumed, res.Sent, sentParts)
	if res.Resumed != int64(before)*mib5 || res.Resumed+res.Sent != int64(len(data)) {
		t.Errorf("resumed %d sent %d; want %d resumed (the parts on the server) and the rest sent", res.Resumed, res.Sent, before*mib5)
	}
	if int(sentParts) != parts-before {
		t.Errorf("%d parts sent again, want %d", sentParts, parts-before)
	}
	backendtest.WantContent(t, second, "f", data)
	if fi := backendtest.Stat(t, second, "f"); !fi.ModTime.Equal(backendtest.BaseTime) || fi.Mode.Perm() != 0o644 {
		t.Errorf("resumed file has mtime %v mode %v", fi.ModTime, fi.Mode)
	}
	for u := range cl.ListIncompleteUploads(t.Context(), srv.Bucket(), key, true) {
		t.Errorf("upload %s of %s still open after completion (err %v)", u.UploadID, u.Key, u.Err)
	}
}

// TestResumeReplacesBadParts corrupts parts of an unfinished upload behind
// the backend's back: they are not kept, and the published file is right.
func TestResumeReplacesBadParts(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	c := testConfig(srv)
	b := newTestBackend(t, c)
	const mib5 = 5 << 20
	data := backendtest.RandomBytes(4*mib5+5, 51)
	key := c.Prefix + "/g"
	if err := b.Mkdir(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	cl, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	core := minio.Core{Client: cl}
	id, err := core.NewMultipartUpload(t.Context(), srv.Bucket(), key, minio.PutObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), data[mib5:2*mib5]...)
	bad[100] ^= 1
	planted := []struct {
		num  int
		data []byte
	}{
		{1, data[:mib5]},                  // good
		{2, bad},                          // one bit flipped
		{3, data[2*mib5 : 2*mib5+mib5/2]}, // short
		{4, data[3*mib5 : 4*mib5]},        // good
	}
	for _, p := range planted {
		if _, err := core.PutObjectPart(t.Context(), srv.Bucket(), key, id, p.num, strings.NewReader(string(p.data)), int64(len(p.data)), minio.PutObjectPartOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	res := backendtest.Upload(t, b, "g", data, backendtest.BaseTime.Add(time.Hour))
	if res.Resumed != 2*mib5 {
		t.Errorf("resumed %d bytes, want the two good parts (%d)", res.Resumed, 2*mib5)
	}
	backendtest.WantContent(t, b, "g", data)
	// The upload was started without ferry's metadata: it is set after.
	if fi := backendtest.Stat(t, b, "g"); !fi.ModTime.Equal(backendtest.BaseTime.Add(time.Hour)) {
		t.Errorf("mtime %v after resuming a foreign upload", fi.ModTime)
	}
}

func TestCleanupStale(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	c := testConfig(srv)
	c.AbortAfter = time.Hour
	b := newTestBackend(t, c)
	cl, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	core := minio.Core{Client: cl}
	for _, k := range []string{"old", "sub/old2"} {
		if _, err := core.NewMultipartUpload(t.Context(), srv.Bucket(), c.Prefix+"/"+k, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := core.NewMultipartUpload(t.Context(), srv.Bucket(), "elsewhere/x", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	n, err := b.CleanupStale(t.Context())
	if err != nil || n != 0 {
		t.Fatalf("CleanupStale of young uploads = %d, %v; want 0", n, err)
	}
	defer func() { now = time.Now }()
	now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	n, err = b.CleanupStale(t.Context())
	if err != nil || n != 2 {
		t.Fatalf("CleanupStale two hours later = %d, %v; want the 2 under the prefix", n, err)
	}
	left := 0
	for u := range cl.ListIncompleteUploads(t.Context(), srv.Bucket(), "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		if !strings.HasPrefix(u.Key, "elsewhere/") {
			t.Errorf("upload of %s survived cleanup", u.Key)
		}
		left++
	}
	if left != 1 {
		t.Errorf("%d uploads left, want the one outside the prefix", left)
	}
}

// TestStalledLinkFails black-holes the link under an upload: the upload
// fails with a retryable ErrUnreachable once StallTimeout passes without
// progress, instead of hanging until TCP gives up, and a later attempt over
// a working link resumes it.
func TestStalledLinkFails(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	px, err := faultproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	c := testConfig(srv)
	c.Endpoint = "http://" + px.Addr()
	c.StallTimeout = time.Second
	b := newTestBackend(t, c)
	data := backendtest.RandomBytes(40<<20, 61)
	src := backendtest.OnRead(backendtest.NewBytes(data, backendtest.BaseTime), func(off int64) {
		// The fifth part is read once one of the first four is sent.
		if off >= 20<<20 {
			px.BlackHole()
		}
	})
	start := time.Now()
	_, err = b.Upload(t.Context(), "s", src)
	took := time.Since(start)
	if !errors.Is(err, backends.ErrUnreachable) || backends.IsPermanent(err) {
		t.Fatalf("upload over a dead link: %v; want a retryable ErrUnreachable", err)
	}
	if took > 10*time.Second {
		t.Errorf("the stalled upload took %v to fail with a 1s StallTimeout", took)
	}
	px.Pass()
	res, err := b.Upload(t.Context(), "s", backendtest.NewBytes(data, backendtest.BaseTime))
	if err != nil {
		t.Fatalf("upload after the link came back: %v", err)
	}
	t.Logf("stall detected after %v; the retry resumed %d bytes", took, res.Resumed)
	if res.Resumed == 0 {
		t.Errorf("the retry resumed nothing")
	}
	backendtest.WantContent(t, b, "s", data)
}

// TestMultipartSourceChanged: a source that changed during a multipart
// upload is not published, and its upload is aborted rather than left for
// a resume that could never use it.
func TestMultipartSourceChanged(t *testing.T) {
	srv := s3server.Start(t, s3server.Options{})
	c := testConfig(srv)
	b := newTestBackend(t, c)
	data := backendtest.RandomBytes(12<<20, 71)
	tests := []struct {
		name string
		src  backends.Source
	}{
		{"CheckFails", backendtest.Changed(backendtest.NewBytes(data, backendtest.BaseTime))},
		{"Shrank", backendtest.Short(backendtest.NewBytes(data, backendtest.BaseTime), 7<<20)},
	}
	cl, err := srv.Client()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := b.Upload(t.Context(), tt.name, tt.src)
			if !errors.Is(err, backends.ErrSourceChanged) {
				t.Fatalf("Upload = %v; want ErrSourceChanged", err)
			}
			backendtest.WantNotExist(t, b, tt.name)
			for u := range cl.ListIncompleteUploads(t.Context(), srv.Bucket(), c.Prefix+"/"+tt.name, true) {
				t.Errorf("upload %s of %s left open (err %v)", u.UploadID, u.Key, u.Err)
			}
		})
	}
}
