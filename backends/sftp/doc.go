// Package sftp is ferry's SFTP target: a backends.Backend over SSH that
// checks host keys strictly against known_hosts, keeps its connections alive
// with keepalive@openssh.com and rebuilds them after a loss, and uploads
// through resumable partial files with many write requests in flight,
// published with posix-rename@openssh.com. pkg/sftp serves most calls; new
// partials go over a small SFTP client of ferry's own on a second session
// of each connection, which creates them owner-only in the OPEN itself and
// sends each small file's requests together. A server behind jump hosts
// (ProxyJump in the SSH config) is reached through them (jump.go), one
// behind a ProxyCommand through the command (proxycmd.go).
package sftp
