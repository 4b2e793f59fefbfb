package engine

import (
	"sync"
	"sync/atomic"
)

// Progress receives what the transfer engine is doing, for bars, log lines
// or metrics. Implementations must be safe for concurrent use: many workers
// call them at once. They must return quickly, since a worker waits for them.
type Progress interface {
	// Totals is called once before any transfer with the number of files
	// and bytes the plan uploads.
	Totals(files int, bytes int64)
	// FileStarted is called when a worker begins to upload path.
	FileStarted(path string, size int64)
	// Bytes reports n more bytes of path read for sending. n is negative
	// when a failed attempt is rolled back before a retry, so that the sum
	// of all Bytes calls for a file that ends in FileDone is its size.
	Bytes(path string, n int64)
	// FileDone is called when path is published; resumed is how many of its
	// bytes were kept from an earlier partial upload.
	FileDone(path string, size, resumed int64)
	// FileFailed is called when path is given up on; the bytes it reported
	// have been rolled back by then.
	FileFailed(path string, err error)
}

// nopProgress is used when no Progress is given.
type nopProgress struct{}

func (nopProgress) Totals(int, int64)             {}
func (nopProgress) FileStarted(string, int64)     {}
func (nopProgress) Bytes(string, int64)           {}
func (nopProgress) FileDone(string, int64, int64) {}
func (nopProgress) FileFailed(string, error)      {}

// Counter is a Progress that keeps running totals; the CLI reads it to draw
// bars and log lines. The zero value is ready to use and safe for
// concurrent use.
type Counter struct {
	totalFiles  atomic.Int64
	totalBytes  atomic.Int64
	doneFiles   atomic.Int64
	failedFiles atomic.Int64
	bytes       atomic.Int64

	mu     sync.Mutex
	active map[string]int64 // path -> size, for files in flight
}

// CounterSnapshot is a consistent-enough copy of a Counter's totals.
type CounterSnapshot struct {
	TotalFiles, DoneFiles, FailedFiles int64
	TotalBytes, Bytes                  int64
	Active                             int
}

// Totals implements Progress.
func (c *Counter) Totals(files int, bytes int64) {
	c.totalFiles.Store(int64(files))
	c.totalBytes.Store(bytes)
}

// FileStarted implements Progress.
func (c *Counter) FileStarted(path string, size int64) {
	c.mu.Lock()
	if c.active == nil {
		c.active = make(map[string]int64)
	}
	c.active[path] = size
	c.mu.Unlock()
}

// Bytes implements Progress.
func (c *Counter) Bytes(_ string, n int64) { c.bytes.Add(n) }

// FileDone implements Progress.
func (c *Counter) FileDone(path string, _, _ int64) {
	c.doneFiles.Add(1)
	c.mu.Lock()
	delete(c.active, path)
	c.mu.Unlock()
}

// FileFailed implements Progress.
func (c *Counter) FileFailed(path string, _ error) {
	c.failedFiles.Add(1)
	c.mu.Lock()
	delete(c.active, path)
	c.mu.Unlock()
}

// Snapshot returns the current totals.
func (c *Counter) Snapshot() CounterSnapshot {
	c.mu.Lock()
	active := len(c.active)
	c.mu.Unlock()
	return CounterSnapshot{
		TotalFiles:  c.totalFiles.Load(),
		DoneFiles:   c.doneFiles.Load(),
		FailedFiles: c.failedFiles.Load(),
		TotalBytes:  c.totalBytes.Load(),
		Bytes:       c.bytes.Load(),
		Active:      active,
	}
}

// MultiProgress sends every event to each of ps in turn.
func MultiProgress(ps ...Progress) Progress { return multiProgress(ps) }

type multiProgress []Progress

func (m multiProgress) Totals(files int, bytes int64) {
	for _, p := range m {
		p.Totals(files, bytes)
	}
}

func (m multiProgress) FileStarted(path string, size int64) {
	for _, p := range m {
		p.FileStarted(path, size)
	}
}

func (m multiProgress) Bytes(path string, n int64) {
	for _, p := range m {
		p.Bytes(path, n)
	}
}

func (m multiProgress) FileDone(path string, size, resumed int64) {
	for _, p := range m {
		p.FileDone(path, size, resumed)
	}
}

func (m multiProgress) FileFailed(path string, err error) {
	for _, p := range m {
		p.FileFailed(path, err)
	}
}

var (
	_ Progress = nopProgress{}
	_ Progress = (*Counter)(nil)
	_ Progress = multiProgress(nil)
)
