// Package sftp is ferry's SFTP target: a backends.Backend over SSH that
// checks host keys strictly against known_hosts, keeps its connections alive
// with keepalive@openssh.com and rebuilds them after a loss, and uploads
// through resumable partial files with many write requests in flight,
// published with posix-rename@openssh.com.
package sftp
