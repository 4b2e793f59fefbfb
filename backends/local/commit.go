package local

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
)

// Group commit.
//
// A durable publish needs the data on disk before the rename, and the rename
// on disk before the caller is told. Done per file that is two disk flushes,
// each a journal commit: about 0.4 ms on the machines measured, which caps a
// tree of small files at a few thousand files a second. Instead, uploads that
// have written their partial file queue a commit request, and one leader
// goroutine serves the queue in rounds:
//
//	round k: sync the filesystem  -> the data of batch k and the renames of
//	                                 batch k-1 are now on disk
//	         tell batch k-1 "done"
//	         rename each partial of batch k over its final name
//
// So each round costs one filesystem sync (syncfs(2) on Linux, once per
// filesystem touched), however many files it carries, and every file still
// gets data-before-rename and rename-before-return. A sync also covers every
// earlier metadata change in that filesystem (mkdir, chmod, mtime), which is
// why those are not synced on their own. While a round's sync runs, the next
// batch gathers, so batches grow with the number of concurrent uploads.
//
// A request can be withdrawn (its caller's context cancelled) until the
// leader takes it; after that the caller waits for the round to finish, which
// is bounded by two filesystem syncs. A request without an op (a rename or
// link its caller already made) only waits for the next sync and is not
// withdrawn: the change has happened, only its durability is awaited.

// commitReq is one change waiting to be made durable.
type commitReq struct {
	fd    *os.File     // an open file or directory in the filesystem to sync
	op    func() error // the publishing step (a rename), run after the first sync; may be nil
	done  chan error   // receives the outcome once; buffered
	taken bool         // guarded by committer.mu: the leader has it
}

type committer struct {
	log *slog.Logger
	// sync makes everything written so far in the filesystems of fds
	// durable. Tests replace it to count or fail syncs.
	sync func(fds []*os.File) error

	mu      sync.Mutex
	queue   []*commitReq
	leading bool

	rounds atomic.Int64 // syncs done, for tests and logs
}

func newCommitter(log *slog.Logger) *committer {
	return &committer{log: log, sync: syncFilesystems}
}

// do queues op and returns once op has run and its effect, and every write
// made through fd before, is durable. It returns op's error, or the sync's,
// or ctx's error if ctx is cancelled before the leader takes the request, in
// which case op never runs.
func (c *committer) do(ctx context.Context, fd *os.File, op func() error) error {
	r := &commitReq{fd: fd, op: op, done: make(chan error, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, r)
	if !c.leading {
		c.leading = true
		go c.lead()
	}
	c.mu.Unlock()
	if op == nil {
		return <-r.done
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
	}
	c.mu.Lock()
	if !r.taken {
		c.queue = slices.DeleteFunc(c.queue, func(q *commitReq) bool { return q == r })
		c.mu.Unlock()
		return ctx.Err()
	}
	c.mu.Unlock()
	return <-r.done
}

// lead serves rounds until the queue is empty and nothing waits for a sync.
func (c *committer) lead() {
	var applied []*commitReq // op done, waiting for the sync that makes it durable
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		if len(batch) == 0 && len(applied) == 0 {
			c.leading = false
			c.mu.Unlock()
			return
		}
		for _, r := range batch {
			r.taken = true
		}
		c.mu.Unlock()

		fds := make([]*os.File, 0, len(batch)+len(applied))
		for _, r := range batch {
			fds = append(fds, r.fd)
		}
		for _, r := range applied {
			fds = append(fds, r.fd)
		}
		err := c.sync(fds)
		c.rounds.Add(1)
		if err != nil {
			err = fmt.Errorf("sync filesystem: %w", classify(err))
			c.log.Warn("commit round failed", "files", len(batch)+len(applied), "err", err)
		} else {
			c.log.Debug("commit round", "published", len(applied), "next", len(batch))
		}
		for _, r := range applied {
			r.done <- err
		}
		applied = applied[:0]
		for _, r := range batch {
			if err != nil || r.op == nil {
				r.done <- err
				continue
			}
			if oerr := r.op(); oerr != nil {
				r.done <- oerr
				continue
			}
			applied = append(applied, r)
		}
	}
}
