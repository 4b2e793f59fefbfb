package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/ferrysync/ferry/backends"
	"github.com/minio/minio-go/v7"
)

// maxCopySize is the largest object one CopyObject may copy; larger ones
// are copied part by part.
const maxCopySize = 5 << 30

// Rename copies from to to on the server and then deletes from; a
// directory is renamed object by object. A reader can see both names for a
// moment, never neither for a file. The parent of to must exist. A failure
// half-way through a directory leaves objects under both names; running it
// again finishes it.
func (b *Backend) Rename(ctx context.Context, from, to string) error {
	ctx, slot, err := b.enter(ctx, "rename", from, to)
	if err != nil {
		return err
	}
	what := from + " to " + to
	if from == "" || to == "" {
		return backends.Permanent(fmt.Errorf("rename %s: the target root cannot be renamed", what))
	}
	return b.classify("rename", what, b.rename(ctx, from, to), slot)
}

func (b *Backend) rename(ctx context.Context, from, to string) error {
	src, err := b.stat(ctx, from)
	if err != nil {
		return err
	}
	if parent, _ := backends.Split(to); parent != "" {
		pi, err := b.stat(ctx, parent)
		if err != nil {
			return fmt.Errorf("parent of destination: %w", err)
		}
		if !pi.IsDir() {
			return fmt.Errorf("parent of destination: %w", backends.Permanent(errNotDir))
		}
	}
	if !src.IsDir() {
		if ti, err := b.stat(ctx, to); err == nil && ti.IsDir() {
			return fmt.Errorf("destination: %w", backends.Permanent(errIsDir))
		}
		if err := b.copyObject(ctx, b.key(from), b.key(to), src.Size, nil); err != nil {
			return err
		}
		return b.removeKey(ctx, b.key(from))
	}
	// A directory: every object under it, marker included, moves.
	var keys []string
	var sizes []int64
	fromPfx, toPfx := b.dirKey(from), b.dirKey(to)
	for oi := range b.core.Client.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: fromPfx, Recursive: true}) {
		if oi.Err != nil {
			return classifyS3(oi.Err, b.bucket, 0)
		}
		keys = append(keys, oi.Key)
		sizes = append(sizes, oi.Size)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for i, k := range keys {
		dst := toPfx + k[len(fromPfx):]
		var err error
		if strings.HasSuffix(k, "/") {
			err = b.copyMarker(ctx, k, dst)
		} else {
			err = b.copyObject(ctx, k, dst, sizes[i], nil)
		}
		if err != nil {
			return err
		}
	}
	for _, k := range keys {
		if err := b.removeKey(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// copyObject copies src to dst on the server. With meta set it replaces
// the user metadata, otherwise the copy keeps the source's.
func (b *Backend) copyObject(ctx context.Context, src, dst string, size int64, meta map[string]string) error {
	s := minio.CopySrcOptions{Bucket: b.bucket, Object: src}
	d := minio.CopyDestOptions{Bucket: b.bucket, Object: dst, UserMetadata: meta, ReplaceMetadata: meta != nil}
	var err error
	if size > maxCopySize {
		if meta == nil {
			oi, herr := b.head(ctx, src)
			if herr != nil {
				return herr
			}
			d.UserMetadata, d.ReplaceMetadata = stripMeta(oi.UserMetadata), true
		}
		_, err = b.core.ComposeObject(ctx, d, s)
	} else {
		_, err = b.core.Client.CopyObject(ctx, d, s)
	}
	if err != nil {
		return classifyS3(err, b.bucket, 0)
	}
	return nil
}

// copyMarker writes the directory marker dst with the metadata (mtime,
// mode) of the marker src. A marker holds no data, so it is written anew
// rather than copied: servers that keep markers as real directories refuse
// a server-side copy onto one.
func (b *Backend) copyMarker(ctx context.Context, src, dst string) error {
	oi, err := b.head(ctx, src)
	if err != nil {
		return err
	}
	_, err = b.core.PutObject(ctx, b.bucket, dst, bytes.NewReader(nil), 0, "", "",
		minio.PutObjectOptions{UserMetadata: stripMeta(oi.UserMetadata), ContentType: "application/x-directory", DisableContentSha256: true})
	if err != nil {
		return classifyS3(err, b.bucket, 0)
	}
	return nil
}

// stripMeta returns user metadata keyed without the X-Amz-Meta- prefix.
func stripMeta(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for _, k := range []string{metaMtime, metaMode, metaSha256} {
		if v, ok := userMeta(m, k); ok {
			out[k] = v
		}
	}
	return out
}

// SetModTime rewrites the object's metadata with a new mtime through a
// server-side copy onto itself (the content does not cross the link). For
// a directory it rewrites, or creates, its marker.
func (b *Backend) SetModTime(ctx context.Context, path string, t time.Time) error {
	ctx, slot, err := b.enter(ctx, "set mtime", path)
	if err != nil {
		return err
	}
	return b.classify("set mtime", path, b.setModTime(ctx, path, t), slot)
}

func (b *Backend) setModTime(ctx context.Context, path string, t time.Time) error {
	if path == "" {
		return nil // the root has nowhere to keep one
	}
	oi, err := b.head(ctx, b.key(path))
	if err == nil {
		meta := stripMeta(oi.UserMetadata)
		meta[metaMtime] = formatMtime(t)
		return b.setMeta(ctx, b.key(path), oi.Size, meta)
	}
	if !errors.Is(err, backends.ErrNotExist) {
		return err
	}
	fi, err := b.stat(ctx, path)
	if err != nil {
		return err
	}
	meta := map[string]string{metaMtime: formatMtime(t), metaMode: formatMode(fi.Mode)}
	return b.putMarker(ctx, path, meta)
}

// setMeta replaces the user metadata of key, keeping its content.
func (b *Backend) setMeta(ctx context.Context, key string, size int64, meta map[string]string) error {
	return b.copyObject(ctx, key, key, size, maps.Clone(meta))
}
