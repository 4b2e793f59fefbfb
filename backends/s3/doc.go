// Package s3 is ferry's target for S3-compatible object stores (AWS S3,
// MinIO, Ceph, Garage, versitygw), built on minio-go. Directories are key
// prefixes, marked by a zero-byte "dir/" object so that empty directories
// exist; mtime and mode live in user metadata. Small files go up in one PUT;
// large ones as multipart uploads that a later attempt, in this process or
// another, finds again and continues after verifying each part already
// sent. An object appears whole when its PUT or CompleteMultipartUpload
// returns, so no torn object can be seen and the partial-file names of the
// other backends are never used.
package s3
