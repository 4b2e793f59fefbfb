//go:build !linux

package state

func dropMapped(addr uintptr, n int64) {}
