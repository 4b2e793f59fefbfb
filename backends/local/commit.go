package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Group commit.
//
// A durable publish needs the data on disk before the rename, and the rename
// on disk before the caller is told. Done file by file that is two disk
// flushes in a row, each a journal commit: about 0.4 ms on a quiet machine,
// which caps a tree of small files at a few thousand files a second. Instead,
// uploads that have written their partial file queue a commit request, and
// one leader goroutine serves the queue in rounds:
//
//	round k: sync the filesystem -> the data of batch k's partials and the
//	         renames of round k-1 are now on disk
//	         tell batch k-1 "done"
//	         rename each partial of batch k over its final name
//
// So every file still gets data-before-rename and rename-before-return, and
// a round costs one filesystem sync (syncfs(2), one journal commit), however
// many files it carries. While a round syncs, the next batch gathers, so
// batches grow with the number of concurrent uploads.
//
// Why syncfs and not fsyncs of the round's own files and directories, run
// at once (fsyncEach, kept for other systems and for BenchmarkSmallFiles):
// concurrent fsyncs do not fold into one journal commit as well as hoped,
// since each file's data write finishes at its own time and the commits
// straggle. On an otherwise idle ext4 (a loop device), 10,000 uploads of
// 4 KiB by 128 goroutines took 300-320 journal commits with syncfs rounds
// against 990-1,210 with fsync rounds, and were faster. The price: syncfs
// also waits for dirty data that other programs wrote to the same
// filesystem, so a target on a busy filesystem pays for its neighbours.
//
// A request can be withdrawn (its caller's context cancelled) until the
// leader takes it; after that the caller waits for the round to finish, which
// is bounded by two syncs. A request without an op (a rename, link or mkdir
// its caller already made) only waits for the next sync of its directories
// and is not withdrawn: the change has happened, only its durability is
// awaited.

// commitReq is one change waiting to be made durable.
type commitReq struct {
	data  *syncRef     // file whose data must be durable before op runs; nil if none
	dirs  []syncRef    // directories whose entries op changes
	op    func() error // the publishing step (a rename); nil if already done
	done  chan error   // receives the outcome once; buffered
	taken bool         // guarded by committer.mu: the leader has it
}

// syncRef is an open descriptor to make durable: a partial file or a
// directory. dev is the filesystem it lives on (a file lives on its
// directory's), so that a round syncs each filesystem once without asking;
// key is a directory's backend path, so that a round syncs it once.
type syncRef struct {
	fd  int
	dev uint64
	key string
}

// dirRef returns what a commit round needs of h.
func dirRef(h *dirHandle) syncRef { return syncRef{fd: h.fd, dev: h.dev, key: h.key} }

// syncFunc makes durable the data of files and the entries of dirs.
type syncFunc func(files, dirs []syncRef) error

type committer struct {
	log *slog.Logger
	// sync is the durability step of a round; tests replace it to count or
	// fail syncs.
	sync syncFunc

	mu      sync.Mutex
	queue   []*commitReq
	leading bool

	rounds atomic.Int64 // syncs done, for tests and logs
}

func newCommitter(log *slog.Logger, sync syncFunc) *committer {
	return &committer{log: log, sync: sync}
}

// do queues op and returns once op has run and its effect is durable, along
// with every write made through data before. It returns op's error, or the
// sync's, or ctx's error if ctx is cancelled before the leader takes the
// request, in which case op never runs. With a nil op (the change was made
// by the caller) it only waits for the next sync of dirs.
func (c *committer) do(ctx context.Context, data *syncRef, dirs []syncRef, op func() error) error {
	r := &commitReq{data: data, dirs: dirs, op: op, done: make(chan error, 1)}
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

		// This round makes durable the data of the batch's partials and the
		// directories changed by the last round's renames and by changes
		// their callers already made.
		var files, dirs []syncRef
		seen := make(map[string]bool)
		addDir := func(r *commitReq) {
			for _, d := range r.dirs {
				if !seen[d.key] {
					seen[d.key] = true
					dirs = append(dirs, d)
				}
			}
		}
		for _, r := range batch {
			if r.op == nil {
				addDir(r)
			} else if r.data != nil {
				files = append(files, *r.data)
			}
		}
		for _, r := range applied {
			addDir(r)
		}
		err := c.sync(files, dirs)
		c.rounds.Add(1)
		if err != nil {
			err = fmt.Errorf("sync: %w", classify(err))
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

// fsyncEach fsyncs every file and directory, many at once: concurrent
// fsyncs on one filesystem share its journal commits, and unlike a whole
// filesystem sync they do not wait for data that other programs wrote.
func fsyncEach(files, dirs []syncRef) error {
	all := append(slices.Clip(files), dirs...)
	var (
		next atomic.Int64
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for range min(len(all), 64) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(all) {
					return
				}
				if err := fsync(all[i].fd); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fsync retries on EINTR.
func fsync(fd int) error {
	for {
		if err := unix.Fsync(fd); err != unix.EINTR {
			return err
		}
	}
}
