package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults for the zero values of Options.
const (
	DefaultDebounce    = 100 * time.Millisecond
	DefaultSettle      = 150 * time.Millisecond
	DefaultRescanEvery = time.Hour
	DefaultPollEvery   = 10 * time.Second
)

// Bounds on the bookkeeping of paths waiting for a hint. Past them the
// watcher stops tracking single paths and asks for a rescan of the whole
// tree, so a flood costs memory in proportion to the bound, not the flood.
const (
	defaultMaxPending = 50000
	defaultMaxReady   = 50000
)

// Options tunes a Watcher. The zero value is valid and gives the defaults.
type Options struct {
	// Debounce is the quiet time a path needs after its last event before it
	// is hinted, so a burst of events to one path gives one hint. 0 means
	// DefaultDebounce.
	Debounce time.Duration
	// Settle is how long a file's size and mtime must stay unchanged before
	// it is hinted, so a file still being written is not uploaded half way.
	// The file's mtime counts as the start of that time, so a file written
	// once and closed is hinted about max(Debounce, Settle) after its last
	// write. A writer that pauses for longer than both gets an early hint
	// and a later one. 0 means DefaultSettle; <0 turns the check off.
	Settle time.Duration
	// Ignore, when set, is asked about every path (slash-separated, relative
	// to the root, never the root itself). A path for which it returns true
	// is never hinted, and an ignored directory is neither watched nor
	// walked. It is called from the watcher's goroutines and must be safe
	// for concurrent use and quick.
	Ignore func(rel string, isDir bool) bool
	// Logger receives warnings (out of watches, lost events). nil discards.
	Logger *slog.Logger
	// RescanEvery is the period of the safety-net rescan hint for the root.
	// 0 means DefaultRescanEvery; <0 turns it off.
	RescanEvery time.Duration
	// PollEvery is how often a subtree that could not be watched (out of
	// inotify watches) is walked and compared. 0 means DefaultPollEvery.
	PollEvery time.Duration

	// Test seams.
	addWatchHook func(dir string) error // non-nil error replaces adding the watch
	eventHook    func(fsnotify.Event)   // called before each event is handled
	emitHook     func(rel string, decided time.Time)
	maxPending   int
	maxReady     int
}

// Hint names a path worth a look. Several hints for one path that are not
// yet taken are merged into one.
type Hint struct {
	// Path is slash-separated and relative to the root; "" is the root.
	Path string
	// Rescan means changes under Path may have gone unreported (the kernel's
	// event queue overflowed, the root was removed or renamed, more paths
	// changed at once than the watcher tracks singly) or the periodic
	// rescan is due: the engine should compare Path's whole subtree, not
	// just Path itself. Today Path is always the root when Rescan is set.
	Rescan bool
}

// Stats is a snapshot of what a Watcher covers.
type Stats struct {
	Dirs   int // directories watched with inotify
	Polled int // subtrees polled because they could not be watched
}

// Watcher watches one directory tree. Create it with New, drive it with Run,
// read batches from Hints, and stop it with Close or by cancelling Run's
// context.
//
// What it does not see: a change of mode, owner or times alone (chmod,
// touch) makes no hint, as such events are far more often noise than
// content; the periodic rescan catches them. A subtree that fell back to
// polling stays polled until the Watcher is made anew, even after
// fs.inotify.max_user_watches is raised, and so does the root after it was
// removed or renamed away.
type Watcher struct {
	root  string // absolute
	opts  Options
	log   *slog.Logger
	fsw   *fsnotify.Watcher
	hints chan []Hint
	poll  *poller

	// The watched directories by path and by identity. inotify keeps one
	// watch per directory, not per path, so a directory seen at a new path
	// before its move was reported must lose its old registration first.
	mu   sync.Mutex // guards dirs and byID; the loop writes, Stats reads
	dirs map[string]dirID
	byID map[dirID]string

	// Owned by the goroutine in New, then by Run's loop.
	pend          pendingSet
	ready         readySet
	warnedNoSpace bool

	started   atomic.Bool
	closeOnce sync.Once
	closed    chan struct{}
	done      chan struct{} // closed when Run returns
}

// New watches every directory under root (not following symlinks) and
// returns once all of them are watched, so every change made after New
// returns is reported. Changes made before are not: the engine's first full
// sync covers them. Subtrees that cannot be watched for lack of inotify
// watches are polled instead, with one warning. New fails if root is not a
// readable directory or inotify cannot be set up; the caller must Close the
// returned Watcher.
func New(root string, opts Options) (*Watcher, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("watch %s: not a directory", root)
	}
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.Settle == 0 {
		opts.Settle = DefaultSettle
	}
	if opts.RescanEvery == 0 {
		opts.RescanEvery = DefaultRescanEvery
	}
	if opts.PollEvery <= 0 {
		opts.PollEvery = DefaultPollEvery
	}
	if opts.maxPending <= 0 {
		opts.maxPending = defaultMaxPending
	}
	if opts.maxReady <= 0 {
		opts.maxReady = defaultMaxReady
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	w := &Watcher{
		root:   abs,
		opts:   opts,
		log:    log,
		fsw:    fsw,
		hints:  make(chan []Hint),
		dirs:   make(map[string]dirID),
		byID:   make(map[dirID]string),
		pend:   newPendingSet(),
		ready:  newReadySet(),
		closed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	w.poll = newPoller(abs, opts.PollEvery, w.ignored, log)
	if err := w.addTree("", false); err != nil {
		fsw.Close()
		return nil, err
	}
	return w, nil
}

// Hints returns the channel of hint batches. Within a batch each path appears
// once. Hints that are not taken accumulate (merged per path, and past a
// bound replaced by one rescan of the root), so a slow reader loses nothing
// but detail. The channel is closed when Run returns.
func (w *Watcher) Hints() <-chan []Hint { return w.hints }

// Stats reports what is watched and polled. Safe for concurrent use.
func (w *Watcher) Stats() Stats {
	w.mu.Lock()
	n := len(w.dirs)
	w.mu.Unlock()
	return Stats{Dirs: n, Polled: w.poll.count()}
}

// Run processes events until ctx is cancelled or Close is called, then
// closes Hints and returns ctx.Err(), or nil after Close. It returns an
// error if inotify's event stream ends by itself. All goroutines it started
// have ended when it returns; the inotify watches stay until Close. It may
// be called once; a second call returns an error at once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.started.CompareAndSwap(false, true) {
		return errors.New("watch: Run called twice")
	}
	defer close(w.done)
	defer close(w.hints)

	pctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { w.poll.run(pctx) })
	defer wg.Wait()
	defer cancel()

	var rescanC <-chan time.Time
	if w.opts.RescanEvery > 0 {
		t := time.NewTicker(w.opts.RescanEvery)
		defer t.Stop()
		rescanC = t.C
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var armed time.Time

	for {
		var out chan []Hint
		if w.ready.len() > 0 {
			out = w.hints
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.closed:
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return w.lostNotify(ctx)
			}
			if h := w.opts.eventHook; h != nil {
				h(ev)
			}
			w.handleEvent(ev, time.Now())
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return w.lostNotify(ctx)
			}
			w.handleError(err)
		case <-timer.C:
			armed = time.Time{}
			w.flushDue(time.Now())
		case <-rescanC:
			w.emit(Hint{Path: "", Rescan: true})
		case paths := <-w.poll.out:
			now := time.Now()
			for _, p := range paths {
				w.touch(p, now)
			}
		case out <- w.ready.list:
			w.ready.reset()
		}
		if next, ok := w.pend.next(); !ok {
			if !armed.IsZero() {
				timer.Stop()
				armed = time.Time{}
			}
		} else if !next.Equal(armed) {
			timer.Reset(time.Until(next))
			armed = next
		}
	}
}

// lostNotify handles the event channels closing under a running loop, which
// happens only when Close races with it: report that instead of an error.
func (w *Watcher) lostNotify(ctx context.Context) error {
	select {
	case <-w.closed:
		return nil
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch: inotify event stream ended")
}

// Close stops the watcher: it ends Run (which then returns nil), waits for
// it, and releases every inotify watch. Safe to call more than once and
// from any goroutine; a Watcher whose Run was never called just releases
// its watches. It fails only if inotify's descriptor cannot be closed.
func (w *Watcher) Close() error {
	var err error
	w.closeOnce.Do(func() {
		close(w.closed)
		if w.started.Load() {
			<-w.done
		}
		err = w.fsw.Close()
	})
	if err != nil {
		return fmt.Errorf("watch %s: close: %w", w.root, err)
	}
	return nil
}

// ignored wraps Options.Ignore; the root is never ignored.
func (w *Watcher) ignored(rel string, isDir bool) bool {
	return rel != "" && w.opts.Ignore != nil && w.opts.Ignore(rel, isDir)
}

// rel turns an event's absolute name into a root-relative slash path.
func (w *Watcher) rel(name string) (string, bool) {
	if name == w.root {
		return "", true
	}
	r, err := filepath.Rel(w.root, name)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return "", false
	}
	return filepath.ToSlash(r), true
}

func (w *Watcher) abs(rel string) string {
	if rel == "" {
		return w.root
	}
	return filepath.Join(w.root, filepath.FromSlash(rel))
}

// emit queues a hint for the reader at once.
func (w *Watcher) emit(h Hint) {
	if w.ready.len() >= w.opts.maxReady {
		w.ready.reset()
		h = Hint{Path: "", Rescan: true}
		w.log.Warn("watch: too many hints waiting to be taken; asking for a full rescan instead",
			"root", w.root, "bound", w.opts.maxReady)
	}
	w.ready.add(h)
}

// touch marks a path as changed now; its hint follows once it is quiet and
// settled.
func (w *Watcher) touch(rel string, now time.Time) {
	if w.pend.len() >= w.opts.maxPending && !w.pend.has(rel) {
		w.pend.clear()
		w.log.Warn("watch: too many changed paths at once; asking for a full rescan instead",
			"root", w.root, "bound", w.opts.maxPending)
		w.emit(Hint{Path: "", Rescan: true})
		return
	}
	w.pend.touch(rel, now, now.Add(w.opts.Debounce))
}
