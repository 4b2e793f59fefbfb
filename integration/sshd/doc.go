// Package sshd runs a real OpenSSH sshd on 127.0.0.1 as a test fixture.
//
// Each Start generates its own host keys, client key, authorized_keys and
// sshd_config in a temporary directory, so tests never touch the machine's
// own ssh setup and can run side by side. The server can be stopped, killed
// with its sessions, and restarted on the same port with the same keys, which
// is what the fault tests of the sftp backend and of the integration suite
// need.
package sshd
