//go:build !linux

package sftp

import (
	"net"
	"time"
)

func setUserTimeout(*net.TCPConn, time.Duration) {}
