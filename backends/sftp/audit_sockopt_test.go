//go:build linux

package sftp

import (
	"context"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTCPKeepaliveAndUserTimeout reads the socket options of a connection
// dialled the default way (no custom Dial): TCP keepalive on, its first
// probe after one keepalive interval of silence (the later probes keep the
// system's spacing: the SSH keepalive, not TCP's, declares a link dead),
// and TCP_USER_TIMEOUT bounding unacknowledged data to
// the longer of the stall timeout and interval x misses, since Linux
// otherwise retransmits for a quarter of an hour before it reports a dead
// peer under a write.
func TestTCPKeepaliveAndUserTimeout(t *testing.T) {
	cases := []struct {
		name     string
		interval time.Duration
		missed   int
		stall    time.Duration
		want     time.Duration // TCP_USER_TIMEOUT
	}{
		{"defaults", 0, 0, 0, max(DefaultStallTimeout, DefaultKeepaliveInterval*DefaultKeepaliveMaxMissed)},
		{"stall timeout longer", 2 * time.Second, 3, 20 * time.Second, 20 * time.Second},
		{"keepalive bound longer", 10 * time.Second, 4, 5 * time.Second, 40 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, serverOpts{})
			cfg := e.config()
			cfg.KeepaliveInterval, cfg.KeepaliveMaxMissed, cfg.StallTimeout = tc.interval, tc.missed, tc.stall
			cfg.Connections = 1
			b := dial(t, cfg)
			c, err := b.get(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			tcp, ok := c.net.Conn.(*net.TCPConn)
			if !ok {
				t.Fatalf("connection is %T, not a TCP socket", c.net.Conn)
			}
			rc, err := tcp.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var keepalive, idle, userTimeout int
			var serr error
			if err := rc.Control(func(fd uintptr) {
				get := func(level, opt int) int {
					v, err := unix.GetsockoptInt(int(fd), level, opt)
					if err != nil && serr == nil {
						serr = err
					}
					return v
				}
				keepalive = get(unix.SOL_SOCKET, unix.SO_KEEPALIVE)
				idle = get(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
				userTimeout = get(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
			}); err != nil {
				t.Fatal(err)
			}
			if serr != nil {
				t.Fatal(serr)
			}
			interval := b.cfg.KeepaliveInterval
			if keepalive == 0 {
				t.Error("TCP keepalive is off")
			}
			if want := int(interval / time.Second); idle != want {
				t.Errorf("TCP keepalive idle %ds, want %ds (the keepalive interval)", idle, want)
			}
			if got := time.Duration(userTimeout) * time.Millisecond; got != tc.want {
				t.Errorf("TCP_USER_TIMEOUT %v, want %v", got, tc.want)
			}
		})
	}
}
