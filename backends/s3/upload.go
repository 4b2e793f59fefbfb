package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/ferrysync/ferry/backends"
	"github.com/minio/minio-go/v7"
)

// Upload publishes src at path, refusing to when path is a directory
// (has a marker). Files up to PartSize go up in one PUT with
// their MD5 (checked by the server) and SHA-256 (signed, and kept in the
// metadata for Hash). Larger files go up as a multipart upload at path's
// own key: an upload left by an earlier attempt, in this process or
// another, is found with ListMultipartUploads, each of its parts is kept
// only if its ETag equals the MD5 of the same range of src, and the rest
// are sent, Concurrency at a time. src.Check runs before the object is
// published; a changed source aborts the multipart upload and returns
// ErrSourceChanged. Nothing is visible at path until the PUT or
// CompleteMultipartUpload succeeds, so no partial name is used. On a
// retryable failure or cancellation the multipart upload stays for the
// next attempt; on a permanent one it is aborted.
func (b *Backend) Upload(ctx context.Context, path string, src backends.Source) (backends.UploadResult, error) {
	ctx, slot, err := b.enter(ctx, "upload", path)
	if err != nil {
		return backends.UploadResult{}, err
	}
	if path == "" {
		return backends.UploadResult{}, backends.Permanent(errors.New("upload: the target root is a directory"))
	}
	var res backends.UploadResult
	// A directory ferry made has a marker; one HEAD finds it, where a
	// listing of the prefix would cost the server several times more per
	// file. A prefix made by another tool without a marker is not seen.
	if _, err := b.head(ctx, b.dirKey(path)); err == nil {
		return res, b.classify("upload", path, backends.Permanent(errIsDir), slot)
	} else if !errors.Is(err, backends.ErrNotExist) {
		return res, b.classify("upload", path, err, slot)
	}
	if src.Size() <= b.cfg.PartSize {
		res, err = b.putSingle(ctx, path, src)
	} else {
		res, err = b.putMultipart(ctx, path, src)
	}
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return res, b.classify("upload", path, err, slot)
}

// readFull reads exactly len(p) bytes of src at off. Running out early
// means the source shrank: ErrSourceChanged.
func readFull(src backends.Source, p []byte, off int64) error {
	n, err := src.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("source ended at %d of %d bytes: %w", off+int64(n), src.Size(), backends.ErrSourceChanged)
	}
	return fmt.Errorf("read source at %d: %w", off+int64(n), err)
}

func (b *Backend) putSingle(ctx context.Context, path string, src backends.Source) (backends.UploadResult, error) {
	size := src.Size()
	buf := make([]byte, size)
	if err := readFull(src, buf, 0); err != nil {
		return backends.UploadResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return backends.UploadResult{}, err
	}
	if err := src.Check(); err != nil {
		return backends.UploadResult{}, err
	}
	m := md5.Sum(buf)
	s := sha256.Sum256(buf)
	sha := hex.EncodeToString(s[:])
	info, err := b.core.PutObject(ctx, b.bucket, b.key(path), bytes.NewReader(buf), size,
		base64.StdEncoding.EncodeToString(m[:]), sha,
		minio.PutObjectOptions{UserMetadata: fileMeta(src.ModTime(), src.Mode(), sha), DisableContentSha256: true})
	if err != nil {
		return backends.UploadResult{}, classifyS3(err, b.bucket, 0)
	}
	if etag := strings.Trim(info.ETag, `"`); isMD5(etag) && etag != hex.EncodeToString(m[:]) {
		return backends.UploadResult{}, fmt.Errorf("server stored ETag %s, want the MD5 %x of what was sent", etag, m)
	}
	return backends.UploadResult{Sent: size, Verified: "sha256"}, nil
}

// isMD5 reports an ETag that is a plain MD5 (not a multipart or encrypted
// object's).
func isMD5(etag string) bool {
	if len(etag) != 32 {
		return false
	}
	_, err := hex.DecodeString(etag)
	return err == nil
}

// partSize is the part size for a file of size bytes: the configured one,
// grown in whole MiB when the file would need more than 10,000 parts.
func (b *Backend) partSize(size int64) int64 {
	ps := b.cfg.PartSize
	if size > ps*maxParts {
		ps = (size + maxParts - 1) / maxParts
		ps = (ps + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return ps
}

// part is one part of a multipart upload: its number, range and, once
// sent or verified, its ETag.
type part struct {
	num       int
	off, size int64
	etag      string
}

func (b *Backend) putMultipart(ctx context.Context, path string, src backends.Source) (backends.UploadResult, error) {
	var res backends.UploadResult
	key := b.key(path)
	size := src.Size()
	ps := b.partSize(size)
	parts := make([]part, (size+ps-1)/ps)
	for i := range parts {
		parts[i] = part{num: i + 1, off: int64(i) * ps, size: min(ps, size-int64(i)*ps)}
	}

	id, found, err := b.findUpload(ctx, key, src, parts)
	if err != nil {
		return res, err
	}
	if id == "" {
		id, err = b.core.NewMultipartUpload(ctx, b.bucket, key,
			minio.PutObjectOptions{UserMetadata: fileMeta(src.ModTime(), src.Mode(), "")})
		if err != nil {
			return res, classifyS3(err, b.bucket, 0)
		}
		b.log.Debug("multipart upload started", "path", path, "size", size, "parts", len(parts), "part_size", ps)
	} else {
		for _, p := range parts {
			if p.etag != "" {
				res.Resumed += p.size
			}
		}
		b.log.Debug("multipart upload resumed", "path", path, "upload_id", id, "kept", res.Resumed)
	}

	sent, err := b.sendParts(ctx, key, id, src, parts)
	res.Sent = sent
	if err == nil {
		err = src.Check()
	}
	if err != nil {
		if errors.Is(err, backends.ErrSourceChanged) || (backends.IsPermanent(err) && ctx.Err() == nil) {
			b.abort(key, id)
		}
		return res, err
	}

	complete := make([]minio.CompletePart, len(parts))
	whole := md5.New()
	for i, p := range parts {
		complete[i] = minio.CompletePart{PartNumber: p.num, ETag: p.etag}
		raw, _ := hex.DecodeString(p.etag)
		whole.Write(raw)
	}
	info, err := b.core.CompleteMultipartUpload(ctx, b.bucket, key, id, complete, minio.PutObjectOptions{})
	if err != nil {
		return res, classifyS3(err, b.bucket, 0)
	}
	want := fmt.Sprintf("%x-%d", whole.Sum(nil), len(parts))
	if etag := strings.Trim(info.ETag, `"`); strings.Contains(etag, "-") && etag != want {
		return res, fmt.Errorf("completed object has ETag %s, want %s from the parts sent", etag, want)
	}
	if found {
		// The upload was started by an earlier attempt, perhaps for another
		// mtime or mode of this file: its content is proven, its metadata
		// not.
		if err := b.fixMeta(ctx, key, src); err != nil {
			return res, err
		}
	}
	res.Verified = "size"
	return res, nil
}

// sendParts uploads every part without an ETag, Concurrency at a time,
// each with its MD5 for the server to check. After the first failure no
// new part starts; those in flight finish. It returns the bytes sent.
func (b *Backend) sendParts(ctx context.Context, key, id string, src backends.Source, parts []part) (int64, error) {
	var (
		mu    sync.Mutex
		sent  int64
		first error
		wg    sync.WaitGroup
	)
	jobs := make(chan *part)
	for range b.cfg.Concurrency {
		wg.Go(func() {
			buf := make([]byte, 0, b.cfg.PartSize)
			for p := range jobs {
				if cap(buf) < int(p.size) {
					buf = make([]byte, 0, p.size)
				}
				etag, err := b.sendPart(ctx, key, id, src, p, buf[:p.size])
				mu.Lock()
				if err != nil {
					first = cmpOr(first, fmt.Errorf("part %d: %w", p.num, err))
				} else {
					p.etag = etag
					sent += p.size
				}
				mu.Unlock()
			}
		})
	}
	for i := range parts {
		if parts[i].etag != "" {
			continue
		}
		mu.Lock()
		stop := first != nil
		mu.Unlock()
		if stop || ctx.Err() != nil {
			break
		}
		jobs <- &parts[i]
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return sent, err
	}
	return sent, first
}

func (b *Backend) sendPart(ctx context.Context, key, id string, src backends.Source, p *part, buf []byte) (string, error) {
	if err := readFull(src, buf, p.off); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	m := md5.Sum(buf)
	op, err := b.core.PutObjectPart(ctx, b.bucket, key, id, p.num, bytes.NewReader(buf), p.size,
		minio.PutObjectPartOptions{Md5Base64: base64.StdEncoding.EncodeToString(m[:]), DisableContentSha256: true})
	if err != nil {
		return "", classifyS3(err, b.bucket, 0)
	}
	want := hex.EncodeToString(m[:])
	if etag := strings.Trim(op.ETag, `"`); etag != want {
		return "", fmt.Errorf("server returned ETag %s for a part whose MD5 is %s", etag, want)
	}
	return want, nil
}

// fixMeta rewrites the object's metadata when it differs from src's.
func (b *Backend) fixMeta(ctx context.Context, key string, src backends.Source) error {
	oi, err := b.head(ctx, key)
	if err != nil {
		return err
	}
	want := fileMeta(src.ModTime(), src.Mode(), "")
	for k, v := range want {
		if got, _ := userMeta(oi.UserMetadata, k); got != v {
			return b.setMeta(ctx, key, oi.Size, want)
		}
	}
	return nil
}

// abort aborts a multipart upload whose parts will never be used. It runs
// even after ctx is cancelled, with its own short deadline; a failure is
// only logged since CleanupStale catches what is left.
func (b *Backend) abort(key, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), abortTimeout)
	defer cancel()
	if err := b.core.AbortMultipartUpload(ctx, b.bucket, key, id); err != nil {
		b.log.Warn("could not abort multipart upload; CleanupStale will", "key", key, "upload_id", id, "err", err)
	}
}
