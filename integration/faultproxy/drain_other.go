//go:build !linux

package faultproxy

import (
	"net"
	"time"
)

// drain gives the kernel a moment to deliver what was written to c; only
// Linux can tell when it is done.
func drain(c *net.TCPConn, max time.Duration) { time.Sleep(min(max, 50*time.Millisecond)) }
