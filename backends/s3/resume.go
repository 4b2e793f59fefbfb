package s3

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/minio/minio-go/v7"
)

// abortTimeout bounds an abort made after the caller's context is done.
const abortTimeout = 30 * time.Second

// upload is one unfinished multipart upload.
type upload struct {
	key, id   string
	initiated time.Time
}

// uploads lists the unfinished multipart uploads whose keys start with
// prefix.
func (b *Backend) uploads(ctx context.Context, prefix string) ([]upload, error) {
	var out []upload
	keyMarker, idMarker := "", ""
	for {
		r, err := b.core.ListMultipartUploads(ctx, b.bucket, prefix, keyMarker, idMarker, "", 1000)
		if err != nil {
			return nil, classifyS3(err, b.bucket, 0)
		}
		for _, u := range r.Uploads {
			out = append(out, upload{key: u.Key, id: u.UploadID, initiated: u.Initiated})
		}
		if !r.IsTruncated || (r.NextKeyMarker == keyMarker && r.NextUploadIDMarker == idMarker) {
			return out, nil
		}
		keyMarker, idMarker = r.NextKeyMarker, r.NextUploadIDMarker
	}
}

// findUpload looks for an unfinished multipart upload at key, the newest
// if there are several, and marks in parts (by setting etag) each part it
// holds whose size and MD5 match the same range of src. found says the
// upload was started by an earlier attempt. id is "" when there is none.
func (b *Backend) findUpload(ctx context.Context, key string, src backends.Source, parts []part) (id string, found bool, err error) {
	ups, err := b.uploads(ctx, key)
	if err != nil {
		return "", false, err
	}
	var best *upload
	for i := range ups {
		if ups[i].key == key && (best == nil || ups[i].initiated.After(best.initiated)) {
			best = &ups[i]
		}
	}
	if best == nil {
		return "", false, nil
	}
	have := map[int]minio.ObjectPart{}
	marker := 0
	for {
		r, err := b.core.ListObjectParts(ctx, b.bucket, key, best.id, marker, 1000)
		if err != nil {
			return "", false, classifyS3(err, b.bucket, 0)
		}
		for _, p := range r.ObjectParts {
			have[p.PartNumber] = p
		}
		if !r.IsTruncated || r.NextPartNumberMarker <= marker {
			break
		}
		marker = r.NextPartNumberMarker
	}
	if err := b.verifyParts(ctx, src, parts, have); err != nil {
		return "", false, err
	}
	return best.id, true, nil
}

// verifyParts sets the etag of each part whose counterpart on the server
// has the same size and an ETag equal to the MD5 of its range of src. A
// part that does not match is simply sent again, replacing it.
func (b *Backend) verifyParts(ctx context.Context, src backends.Source, parts []part, have map[int]minio.ObjectPart) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	jobs := make(chan *part)
	for range b.cfg.Concurrency {
		wg.Go(func() {
			buf := make([]byte, 0, b.cfg.PartSize)
			for p := range jobs {
				if cap(buf) < int(p.size) {
					buf = make([]byte, 0, p.size)
				}
				buf = buf[:p.size]
				if err := readFull(src, buf, p.off); err != nil {
					mu.Lock()
					first = cmpOr(first, fmt.Errorf("verify part %d: %w", p.num, err))
					mu.Unlock()
					continue
				}
				m := md5.Sum(buf)
				if sum := hex.EncodeToString(m[:]); sum == strings.Trim(have[p.num].ETag, `"`) {
					p.etag = sum
				}
			}
		})
	}
	for i := range parts {
		sp, ok := have[parts[i].num]
		if !ok || sp.Size != parts[i].size || ctx.Err() != nil {
			continue
		}
		jobs <- &parts[i]
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return first
}

// CleanupStale aborts the unfinished multipart uploads under the
// target's prefix that were started more than AbortAfter ago: uploads of
// files that changed or vanished, which no later attempt will finish. The
// engine calls it once per run. It returns how many it aborted; it goes on
// past a failed abort and returns the first error. Cancelling ctx stops it
// between aborts.
func (b *Backend) CleanupStale(ctx context.Context) (int, error) {
	ctx, slot, err := b.enter(ctx, "cleanup uploads")
	if err != nil {
		return 0, err
	}
	ups, err := b.uploads(ctx, b.dirKey(""))
	if err != nil {
		return 0, b.classify("cleanup uploads", b.prefix, err, slot)
	}
	cutoff := now().Add(-b.cfg.AbortAfter)
	n := 0
	var first error
	for _, u := range ups {
		if !u.initiated.Before(cutoff) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if err := b.core.AbortMultipartUpload(ctx, b.bucket, u.key, u.id); err != nil {
			first = cmpOr(first, b.classify("abort upload", u.key, classifyS3(err, b.bucket, 0), slot))
			continue
		}
		b.log.Info("aborted abandoned multipart upload", "key", u.key, "started", u.initiated)
		n++
	}
	return n, first
}
