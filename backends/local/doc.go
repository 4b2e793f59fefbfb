// Package local is the ferry backend for a directory on a local or mounted
// filesystem. Every path is resolved through an os.Root, so nothing is read
// or written outside the target root, also not through a symlink inside it;
// uploads then work with *at system calls on a descriptor of their parent
// directory, kept open between uploads and re-checked on each use (see
// dircache.go). Uploads are written to a partial file, made durable, and
// renamed over the final name; durability is batched across concurrent
// uploads (group commit, see commit.go) so that fsync on costs about one
// journal commit per batch instead of two per file.
package local
