package state

import "golang.org/x/sys/unix"

// dropMapped drops the resident pages of a read-only file mapping of n
// bytes at addr (memory outside the Go heap). Errors are ignored: the
// advice only saves memory.
func dropMapped(addr uintptr, n int64) {
	_, _, _ = unix.Syscall(unix.SYS_MADVISE, addr, uintptr(n), unix.MADV_DONTNEED)
}
