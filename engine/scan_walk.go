package engine

import (
	"cmp"
	"container/heap"
	"context"
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
}

func (e *scanEntry) modTime() time.Time { return time.Unix(e.sec, int64(e.nsec)) }

// info returns e as a FileInfo at path.
func (e *scanEntry) info(path string) backends.FileInfo {
	return backends.FileInfo{Path: path, Size: e.size, ModTime: e.modTime(), Mode: e.mode, LinkTarget: e.link}
}

// treeWalk reads a tree with a few goroutines and hands its entries out
// one by one in ComparePaths order (a directory before its contents).
// Workers read the directories the consumer will reach next, at most
// window of them ahead, so memory follows the directories in flight, not
// the size of the tree. E is what one directory's read returns per entry.
type treeWalk[E any] struct {
	ctx context.Context
	// read lists the directory at path: its entries sorted by name and
	// problems with single entries; err when the directory itself could
	// not be read (the entries read so far may come with it). Called from
	// several goroutines at once.
	read func(path string) ([]E, []Problem, error)
	// enter returns the path of the directory e is, when the walk goes
	// into it.
	enter func(dir string, e *E) (string, bool)

	mu      sync.Mutex
	cond    *sync.Cond
	queue   jobHeap[E] // known, not yet read; the least path is read first
	ahead   int        // jobs read or being read and not yet consumed
	window  int
	urgent  *dirJob[E] // the job the consumer waits for, read whatever the window
	stopped bool
	wg      sync.WaitGroup

	stack []walkFrame[E]
}

// dirJob is the read of one directory, done by a worker, most often
// ahead of the consumer.
type dirJob[E any] struct {
	path  string // relative to the root, slash-separated; "" for the root
	state int    // jobQueued, jobReading or jobDone; guarded by treeWalk.mu
	at    int    // index in treeWalk.queue while queued
	done  chan struct{}

	entries  []E
	subs     []*dirJob[E] // the reads of the entries that are entered
	problems []Problem
	err      error
}

const (
	jobQueued = iota
	jobReading
	jobDone
)

type walkFrame[E any] struct {
	job *dirJob[E]
	i   int
}

// scanWorkers is how many goroutines read local directories: the reads
// are system calls that mostly wait on the kernel, so twice the cores
// keeps them busy, and a few more help a cold cache.
func scanWorkers() int { return min(max(2*runtime.GOMAXPROCS(0), 2), 8) }

// startWalk starts the workers of w (ctx, read and enter set). Close must
// be called.
func (w *treeWalk[E]) start(workers, window int) {
	w.window = window
	w.cond = sync.NewCond(&w.mu)
	rootJob := &dirJob[E]{done: make(chan struct{})}
	heap.Push(&w.queue, rootJob)
	w.stack = []walkFrame[E]{{job: rootJob, i: -1}}
	for range workers {
		w.wg.Go(w.work)
	}
}

// Close stops the workers and waits for them.
func (w *treeWalk[E]) Close() {
	w.mu.Lock()
	w.stopped = true
	w.cond.Broadcast()
	w.mu.Unlock()
	w.wg.Wait()
}

func (w *treeWalk[E]) work() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for {
		for !w.stopped && w.urgent == nil && (len(w.queue) == 0 || w.ahead >= w.window) {
			w.cond.Wait()
		}
		if w.stopped {
			return
		}
		var j *dirJob[E]
		if j = w.urgent; j != nil {
			w.urgent = nil
			if j.state != jobQueued {
				continue
			}
			heap.Remove(&w.queue, j.at)
		} else {
			j = heap.Pop(&w.queue).(*dirJob[E])
		}
		j.state = jobReading
		w.ahead++
		w.mu.Unlock()
		w.readJob(j)
		w.mu.Lock()
	}
}

// readJob reads the directory of j and queues its subdirectories.
func (w *treeWalk[E]) readJob(j *dirJob[E]) {
	if err := w.ctx.Err(); err != nil {
		j.err = err
	} else {
		j.entries, j.problems, j.err = w.read(j.path)
	}
	w.mu.Lock()
	for k := range j.entries {
		if sub, ok := w.enter(j.path, &j.entries[k]); ok {
			if j.subs == nil {
				j.subs = make([]*dirJob[E], len(j.entries))
			}
			j.subs[k] = &dirJob[E]{path: sub, done: make(chan struct{})}
			heap.Push(&w.queue, j.subs[k])
		}
	}
	j.state = jobDone
	w.cond.Broadcast()
	w.mu.Unlock()
	close(j.done)
}

// wait returns once j is read. A job not started yet is handed to the
// next free worker past the window: the jobs filling the window come
// after it, and are consumed only once it is.
func (w *treeWalk[E]) wait(j *dirJob[E]) {
	w.mu.Lock()
	if j.state == jobQueued {
		w.urgent = j
		w.cond.Broadcast()
	}
	w.mu.Unlock()
	<-j.done
}

// consumed gives back j's place in the window.
func (w *treeWalk[E]) consumed(j *dirJob[E]) {
	w.mu.Lock()
	w.ahead--
	w.cond.Broadcast()
	w.mu.Unlock()
	j.entries, j.subs = nil, nil
}

// next returns the next entry in ComparePaths order with its parent
// directory's path (shared by all its entries), or ok false at the end.
// The entry is valid until the walk leaves its directory. A directory
// that could not be read is passed to problem with read's error, and its
// problems as they are reached. err is the context's error, or the root's
// read error.
func (w *treeWalk[E]) next(problem func(Problem)) (dir string, e *E, ok bool, err error) {
	for len(w.stack) > 0 {
		top := &w.stack[len(w.stack)-1]
		if top.i < 0 {
			w.wait(top.job)
			top.i = 0
			if err := w.ctx.Err(); err != nil {
				return "", nil, false, err
			}
			if err := top.job.err; err != nil {
				if top.job.path == "" {
					return "", nil, false, err
				}
				// The directory itself stays listed, so the target keeps
				// its copy; the problem makes the run plan no deletes.
				problem(Problem{Path: top.job.path, Err: err})
			}
			for _, p := range top.job.problems {
				problem(p)
			}
		}
		j := top.job
		if top.i >= len(j.entries) {
			w.consumed(j)
			w.stack = w.stack[:len(w.stack)-1]
			continue
		}
		k := top.i
		top.i++
		if j.subs != nil && j.subs[k] != nil {
			w.stack = append(w.stack, walkFrame[E]{job: j.subs[k], i: -1})
		}
		return j.path, &j.entries[k], true, nil
	}
	return "", nil, false, nil
}

// walker is a treeWalk of the local source.
type walker struct {
	treeWalk[scanEntry]
	root string
	f    *Filter
	log  *slog.Logger
}

// newWalker starts a walk of root; root must be a readable directory (the
// caller has checked). Close must be called.
func newWalker(ctx context.Context, root string, f *Filter, log *slog.Logger) *walker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &walker{root: root, f: f, log: log}
	w.ctx = ctx
	w.read = w.readDir
	w.enter = func(dir string, e *scanEntry) (string, bool) {
		return backends.Join(dir, e.name), e.mode.IsDir()
	}
	w.start(scanWorkers(), 64)
	return w
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
			return nil, nil, fmt.Errorf("read directory: %w", err)
		}
	}
	// On a read error the entries read so far are still used.
	raw, rawProblems, err := readDirStat(w.root, rel)
	if err != nil && rel != "" {
		w.log.Warn("scan: directory not read in full", "path", rel, "err", err)
		err = fmt.Errorf("read directory: %w", err)
	}
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
	if !slices.IsSortedFunc(out, byName) {
		slices.SortFunc(out, byName)
	}
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
type jobHeap[E any] []*dirJob[E]

func (h jobHeap[E]) Len() int           { return len(h) }
func (h jobHeap[E]) Less(i, j int) bool { return ComparePaths(h[i].path, h[j].path) < 0 }
func (h jobHeap[E]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].at, h[j].at = i, j
}
func (h *jobHeap[E]) Push(x any) {
	j := x.(*dirJob[E])
	j.at = len(*h)
	*h = append(*h, j)
}
func (h *jobHeap[E]) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return j
}

func byName(a, b scanEntry) int { return cmp.Compare(a.name, b.name) }
