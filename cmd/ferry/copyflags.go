package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"github.com/ferrysync/ferry/engine"
)

// copyFlags are the flags `ferry sync` and `ferry watch` share: what is
// copied and how, how targets are reached, and the targets' state.
type copyFlags struct {
	mode      string
	excludes  []string
	transfers int
	retries   int
	bwlimit   string
	fsync     bool
	ssh       sshFlags
	s3        s3Flags
	state     stateFlags
}

// register adds the flags; watch tells the daemon's wording and defaults
// from the one-shot command's.
func (c *copyFlags) register(fl *pflag.FlagSet, watch bool) {
	mode := "mirror (delete what the source lacks) or backup (never delete)"
	transfers := "large files uploaded in parallel"
	retries, retriesHelp := engine.DefaultRetries, "retries of a failed file before giving up on it"
	bwlimit := "cap the bandwidth at `rate` bytes/s (500K, 10M, 1.5MiB/s; 0: none)"
	if watch {
		mode = "mirror (delete and move what the source deletes and moves) or backup (never delete)"
		transfers += " per change"
		retries, retriesHelp = 2, "retries of a failed file within one attempt (failed changes are retried with backoff until they land anyway)"
		bwlimit = "cap the bandwidth per target at `rate` bytes/s (500K, 10M; 0: none)"
	}
	fl.StringVar(&c.mode, "mode", "mirror", mode)
	fl.StringArrayVar(&c.excludes, "exclude", nil, "skip paths matching a gitignore-style `pattern` (repeatable)")
	fl.IntVar(&c.transfers, "transfers", engine.DefaultTransfers, transfers)
	fl.IntVar(&c.retries, "retries", retries, retriesHelp)
	fl.StringVar(&c.bwlimit, "bwlimit", "0", bwlimit)
	fl.BoolVar(&c.fsync, "fsync", true, "make each upload durable before it is published (local targets)")
	c.ssh.register(fl)
	c.s3.register(fl)
	c.state.register(fl)
}

// copySetup is what the shared flags resolve to before anything runs.
type copySetup struct {
	mode    engine.Mode
	bwlimit int64
	retries int
}

// validate checks the shared flags; a bad value is a usage error.
func (c *copyFlags) validate() (copySetup, error) {
	var s copySetup
	var err error
	if s.mode, err = engine.ParseMode(c.mode); err != nil {
		return s, usageError(fmt.Errorf("--mode: %w", err))
	}
	if s.bwlimit, err = parseRate(c.bwlimit); err != nil {
		return s, usageError(fmt.Errorf("--bwlimit %q: %w", c.bwlimit, err))
	}
	if c.transfers < 1 {
		return s, usageError(fmt.Errorf("--transfers %d: want at least 1", c.transfers))
	}
	switch {
	case c.retries < 0:
		return s, usageError(fmt.Errorf("--retries %d: want 0 or more", c.retries))
	case c.retries == 0:
		s.retries = -1 // the engine reads 0 as its default
	default:
		s.retries = c.retries
	}
	if _, err := engine.NewFilter(c.excludes); err != nil {
		return s, usageError(fmt.Errorf("--exclude: %w", err))
	}
	if c.state.every < 0 {
		return s, usageError(fmt.Errorf("--target-rescan-every %v: want 0 (never) or a positive duration", c.state.every))
	}
	return s, nil
}
