package faultproxy

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// drain waits, up to max, until the kernel has delivered everything written
// to c, so that a reset that follows does not discard bytes the proxy has
// already counted as forwarded.
func drain(c *net.TCPConn, max time.Duration) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		queued := 0
		cerr := raw.Control(func(fd uintptr) {
			queued, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		})
		if cerr != nil || err != nil || queued == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}
