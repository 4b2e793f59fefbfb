// Package s3 is ferry's target for S3-compatible object stores (AWS S3,
// MinIO, Ceph, Garage, versitygw), built on minio-go.
//
// Directories are key prefixes. Mkdir writes a zero-byte marker object
// "dir/" for the directory and each missing parent, so that empty
// directories exist and can carry an mtime; a prefix with objects under it
// is a directory too, marker or not. mtime (unix seconds with nine
// decimals) and mode (octal) live in user metadata (X-Amz-Meta-Mtime,
// X-Amz-Meta-Mode); S3 has no symlinks.
//
// Small files go up in one PUT with Content-MD5 and a signed SHA-256, which
// is also kept as X-Amz-Meta-Sha256 for Hash. Larger files go up as a
// multipart upload at the final key: a later attempt, in this process or
// another, finds it with ListMultipartUploads, keeps each part whose ETag
// equals the MD5 of the same range of the source, and sends the rest. An
// object appears whole when its PUT or CompleteMultipartUpload returns, so
// no torn object can be seen and the partial-file names of the other
// backends are never used; unfinished uploads older than AbortAfter are
// aborted by CleanupStale.
package s3
