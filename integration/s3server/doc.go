// Package s3server runs a real S3 server for tests: versitygw with its
// posix backend in a temporary directory on 127.0.0.1, with one bucket made
// for the test and stopped when the test ends.
package s3server
