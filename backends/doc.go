// Package backends defines the contract every ferry target implements: a
// small Backend interface (stat, list, mkdir, remove, rename, set mtime, open
// for reading, resumable atomic upload), optional one-method capabilities found
// by type assertion, classified errors, and the path rules that keep every
// operation inside the target root.
package backends
