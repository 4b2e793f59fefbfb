package engine

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// scanEntry is one entry of a scanned directory, kept small: a tree of a
// million files passes through the walk, but only the directories in
// flight are held at once.
type scanEntry struct {
	name string // a slice of the directory's one names string
	link string // symlink target, slash-separated
	size int64
	sec  int64
	nsec int32
	mode fs.FileMode
	sub  *dirJob // the read of this directory's contents, for directories
}

func (e *scanEntry) modTime() time.Time { return time.Unix(e.sec, int64(e.nsec)) }

// info returns e as a FileInfo at path.
func (e *scanEntry) info(path string) backends.FileInfo {
	return backends.FileInfo{Path: path, Size: e.size, ModTime: e.modTime(), Mode: e.mode, LinkTarget: e.link}
}

// dirJob is the read of one directory, done by a walker's worker ahead of
// the consumer or by the consumer itself when it gets there first.
type dirJob struct {
	path  string // relative to the root, slash-separated; "" for the root
	state int    // jobQueued, jobReading or jobDone; guarded by walker.mu
	at    int    // index in walker.queue while queued
	done  chan struct{}

	entries  []scanEntry // sorted by name
	problems []Problem
	err      error // the directory could not be read (entries is empty)
}

const (
	jobQueued = iota
	jobReading
	jobDone
)

// walker reads a local tree with a few goroutines and hands its entries
// out one by one in ComparePaths order (a directory before its contents).
// Workers read the directories the consumer will reach next, at most
// window of them ahead, so memory follows the directories in flight, not
// the size of the tree.
type walker struct {
	ctx  context.Context
	root string
	f    *Filter
	log  *slog.Logger

	mu      sync.Mutex
	cond    *sync.Cond
	queue   jobHeap // known, not yet read; the least path is read first
	ahead   int     // jobs read or being read and not yet consumed
	window  int
	stopped bool
	wg      sync.WaitGroup

	stack []walkFrame
}

type walkFrame struct {
	job *dirJob
	i   int
}

// scanWorkers is how many goroutines read directories: the reads are
// system calls that mostly wait on the kernel, so twice the cores keeps
// them busy, and a few more help a cold cache.
func scanWorkers() int { return min(max(2*runtime.GOMAXPROCS(0), 2), 8) }

// newWalker starts a walk of root; root must be a readable directory (the
// caller has checked). Close must be called.
func newWalker(ctx context.Context, root string, f *Filter, log *slog.Logger) *walker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &walker{ctx: ctx, root: root, f: f, log: log, window: 64}
	w.cond = sync.NewCond(&w.mu)
	rootJob := &dirJob{done: make(chan struct{})}
	heap.Push(&w.queue, rootJob)
	w.stack = []walkFrame{{job: rootJob, i: -1}}
	for range scanWorkers() {
		w.wg.Go(w.work)
	}
	return w
}

// Close stops the workers and waits for them.
func (w *walker) Close() {
	w.mu.Lock()
	w.stopped = true
	w.cond.Broadcast()
	w.mu.Unlock()
	w.wg.Wait()
}

func (w *walker) work() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for !w.stopped && (len(w.queue) == 0 || w.ahead >= w.window) {
			w.cond.Wait()
		}
		if w.stopped {
			return
		}
		j := heap.Pop(&w.queue).(*dirJob)
		j.state = jobReading
		w.ahead++
		w.mu.Unlock()
		w.read(j)
		w.mu.Lock()
	}
}

// read lists the directory of j and queues its subdirectories.
func (w *walker) read(j *dirJob) {
	if err := w.ctx.Err(); err != nil {
		j.err = err
	} else {
		j.entries, j.problems, j.err = w.readDir(j.path)
	}
	w.mu.Lock()
	for k := range j.entries {
		if e := &j.entries[k]; e.mode.IsDir() {
			e.sub = &dirJob{path: backends.Join(j.path, e.name), done: make(chan struct{})}
			heap.Push(&w.queue, e.sub)
		}
	}
	j.state = jobDone
	w.cond.Broadcast()
	w.mu.Unlock()
	close(j.done)
}

// wait returns j once read, reading it here when no worker has started.
func (w *walker) wait(j *dirJob) {
	w.mu.Lock()
	if j.state == jobQueued {
		heap.Remove(&w.queue, j.at)
		j.state = jobReading
		w.ahead++
		w.mu.Unlock()
		w.read(j)
	} else {
		w.mu.Unlock()
	}
	<-j.done
}

// consumed gives back j's place in the window.
func (w *walker) consumed(j *dirJob) {
	w.mu.Lock()
	w.ahead--
	w.cond.Broadcast()
	w.mu.Unlock()
	j.entries = nil
}

// next returns the next entry in ComparePaths order with its parent
// directory's path (shared by all its entries), or ok false at the end.
// The entry is valid until the walk leaves its directory. Problems of
// directories are passed to problem as they are reached. err is the
// context's error, or the root's read error.
func (w *walker) next(problem func(Problem)) (dir string, e *scanEntry, ok bool, err error) {
	for len(w.stack) > 0 {
		top := &w.stack[len(w.stack)-1]
		if top.i < 0 {
			w.wait(top.job)
			top.i = 0
			if err := w.ctx.Err(); err != nil {
				return "", nil, false, err
			}
			if err := top.job.err; err != nil {
				if top.job.path == "" || errors.Is(err, w.ctx.Err()) {
					return "", nil, false, top.job.err
				}
				// The directory itself stays listed, so the target keeps
				// its copy; the problem makes the run plan no deletes.
				w.log.Warn("scan: directory not read in full", "path", top.job.path, "err", err)
				problem(Problem{Path: top.job.path, Err: fmt.Errorf("read directory: %w", err)})
			}
			for _, p := range top.job.problems {
				problem(p)
			}
		}
		if top.i >= len(top.job.entries) {
			w.consumed(top.job)
			w.stack = w.stack[:len(w.stack)-1]
			continue
		}
		e := &top.job.entries[top.i]
		top.i++
		if e.sub != nil {
			w.stack = append(w.stack, walkFrame{job: e.sub, i: -1})
		}
		return top.job.path, e, true, nil
	}
	return "", nil, false, nil
}

// readDir lists the directory rel, keeping what a scan keeps, sorted by
// name. err is set when the directory itself cannot be read.
func (w *walker) readDir(rel string) ([]scanEntry, []Problem, error) {
	full := w.root
	if rel != "" {
		full = filepath.Join(w.root, filepath.FromSlash(rel))
	}
	if readDirFault != nil {
		if err := readDirFault(full); err != nil {
			return nil, nil, err
		}
	}
	// On a read error the entries read so far are still used.
	raw, rawProblems, err := readDirStat(full, rel == "")
	var problems []Problem
	problem := func(name string, err error) {
		p := backends.Join(rel, name)
		w.log.Warn("scan: skipping entry", "path", p, "err", err)
		problems = append(problems, Problem{Path: p, Err: err})
	}
	for _, rp := range rawProblems {
		problem(rp.name, rp.err)
	}
	out := raw[:0]
	filtered := !w.f.Empty()
	for _, e := range raw {
		if err := backends.CheckName(e.name); err != nil {
			problem(e.name, err)
			continue
		}
		switch {
		case e.mode.IsRegular(), e.mode.IsDir(), e.mode&fs.ModeSymlink != 0:
		default:
			problem(e.name, fmt.Errorf("%w: %s", ErrSpecialFile, typeName(e.mode)))
			continue
		}
		if backends.IsPartialName(e.name) || filtered && w.f.excludedSelf(backends.Join(rel, e.name), e.mode.IsDir()) {
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b scanEntry) int { return cmp.Compare(a.name, b.name) })
	slices.SortFunc(problems, func(a, b Problem) int { return ComparePaths(a.Path, b.Path) })
	return out, problems, err
}

// rawProblem is an entry of a directory that could not be read.
type rawProblem struct {
	name string
	err  error
}

// readDirFault, when set by a test, makes reading the directory at a full
// path fail: root reads a mode-000 directory anyway.
var readDirFault func(path string) error

// jobHeap orders queued reads by path in ComparePaths order, which is the
// order the walk reaches them.
type jobHeap []*dirJob

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, j int) bool { return ComparePaths(h[i].path, h[j].path) < 0 }
func (h jobHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].at, h[j].at = i, j
}
func (h *jobHeap) Push(x any) {
	j := x.(*dirJob)
	j.at = len(*h)
	*h = append(*h, j)
}
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return j
}
