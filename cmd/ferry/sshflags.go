package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/ferrysync/ferry/backends/sftp"
)

// sshFlags are the flags every command that opens sftp:// targets takes.
// Each one left unset keeps what ~/.ssh/config and the backend's defaults
// say.
type sshFlags struct {
	identities       []string
	knownHosts       string
	acceptNewHostKey bool
	sshConfig        string
	passphraseEnv    string
	verify           string
	keepalive        time.Duration
	keepaliveMissed  int
	stallTimeout     time.Duration
	connections      int
}

func (s *sshFlags) register(fl *pflag.FlagSet) {
	fl.StringArrayVar(&s.identities, "identity", nil, "SSH private key `file` for sftp:// targets (repeatable; ssh-agent is also used)")
	fl.StringVar(&s.knownHosts, "known-hosts", "", "known_hosts `file` that sftp:// host keys are checked against (default ~/.ssh/known_hosts)")
	fl.BoolVar(&s.acceptNewHostKey, "accept-new-host-key", false, "trust a host key seen for the first time and record it (a changed key is still refused)")
	fl.StringVar(&s.sshConfig, "ssh-config", "", "SSH config `file` (default ~/.ssh/config; \"none\" reads none)")
	fl.StringVar(&s.passphraseEnv, "passphrase-env", "FERRY_SSH_PASSPHRASE", "environment `variable` holding the passphrase of encrypted keys")
	fl.StringVar(&s.verify, "verify", "auto", "content check before publishing on sftp:// targets: auto (server-side sha256, where the account can run sha256sum, of the prefix kept by uploads that resumed more than was compared on resume, 2 MiB by default; size of the others), none (size), hash (server-side sha256 of every upload, else read-back) or read-back")
	fl.DurationVar(&s.keepalive, "keepalive", sftp.DefaultKeepaliveInterval, "time between SSH keepalive requests")
	fl.IntVar(&s.keepaliveMissed, "keepalive-max-missed", sftp.DefaultKeepaliveMaxMissed, "keepalive answers missed before a connection is declared dead")
	fl.DurationVar(&s.stallTimeout, "stall-timeout", sftp.DefaultStallTimeout, "abort and retry an upload that moved no bytes for this long")
	fl.IntVar(&s.connections, "connections", sftp.DefaultConnections, "SSH connections per sftp:// target")
}

// apply copies the flags onto cfg and checks them; a bad value is a usage
// error.
func (s *sshFlags) apply(cfg *sftp.Config) error {
	v, err := sftp.ParseVerify(s.verify)
	if err != nil {
		return usageError(fmt.Errorf("--verify: %w", err))
	}
	switch {
	case s.keepalive <= 0:
		return usageError(fmt.Errorf("--keepalive %v: want a positive duration", s.keepalive))
	case s.keepaliveMissed < 1:
		return usageError(fmt.Errorf("--keepalive-max-missed %d: want at least 1", s.keepaliveMissed))
	case s.stallTimeout <= 0:
		return usageError(fmt.Errorf("--stall-timeout %v: want a positive duration", s.stallTimeout))
	case s.connections < 1:
		return usageError(fmt.Errorf("--connections %d: want at least 1", s.connections))
	}
	cfg.IdentityFiles = append(s.identities, cfg.IdentityFiles...)
	if s.knownHosts != "" {
		cfg.KnownHostsFile = s.knownHosts
	}
	cfg.AcceptNewHostKey = cfg.AcceptNewHostKey || s.acceptNewHostKey
	if s.sshConfig != "" {
		cfg.SSHConfigFile = s.sshConfig
	}
	cfg.PassphraseEnv = s.passphraseEnv
	cfg.Verify = v
	cfg.KeepaliveInterval = s.keepalive
	cfg.KeepaliveMaxMissed = s.keepaliveMissed
	cfg.StallTimeout = s.stallTimeout
	cfg.Connections = s.connections
	return nil
}
