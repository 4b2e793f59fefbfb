package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// handleEvent turns one fsnotify event into pending paths and watch changes.
func (w *Watcher) handleEvent(ev fsnotify.Event, now time.Time) {
	rel, ok := w.rel(ev.Name)
	if !ok {
		return
	}
	// Chmod alone (chmod, chown, xattrs, and also touch) changes no
	// content; a write or create always comes with its own event.
	if ev.Op == fsnotify.Chmod || ev.Op == 0 {
		return
	}
	if rel == "" {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			w.lostRoot()
		}
		return
	}
	switch {
	case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
		// The path is gone from here; if it was a directory its watches go
		// with it. A Create in the same event (rare) is handled below.
		isDir := w.isWatched(rel)
		if isDir {
			w.dropTree(rel)
		}
		if !w.ignored(rel, isDir) {
			w.touch(rel, now)
		}
		if ev.Has(fsnotify.Create) {
			w.created(rel, now)
		}
	case ev.Has(fsnotify.Create):
		w.created(rel, now)
	default: // Write
		if !w.ignored(rel, false) {
			w.touch(rel, now)
		}
	}
}

// created handles a path that appeared by creation or by a move into a
// watched directory. A directory is watched first and walked second, so an
// entry made inside it in between shows up in the walk or as an event.
func (w *Watcher) created(rel string, now time.Time) {
	fi, err := os.Lstat(w.abs(rel))
	if err != nil || !fi.IsDir() {
		if !w.ignored(rel, false) {
			w.touch(rel, now)
		}
		return
	}
	if w.ignored(rel, true) {
		return
	}
	// It may be watched already (the walk of its parent got there first):
	// adding a watch again is harmless, and walking again costs little.
	if err := w.addTree(rel, true); err != nil {
		w.log.Warn("watch: cannot watch new directory", "dir", w.abs(rel), "err", err)
	}
}

// addTree watches rel and every directory under it. With announce, every
// path found is touched, since it may have appeared before its directory
// was watched. A directory that cannot be watched (out of inotify watches,
// or another failure of inotify) is handed to the poller with its whole
// subtree. Without announce (at start-up) it returns an error when rel
// itself cannot be watched for a reason other than running out of watches.
func (w *Watcher) addTree(rel string, announce bool) error {
	now := time.Now()
	stack := []string{rel}
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if announce {
			w.touch(dir, now)
		}
		if err := w.addWatch(dir); err != nil {
			switch {
			case errors.Is(err, syscall.ENOSPC):
				w.noSpace(dir, announce)
			case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
				// Gone again; its parent's event tells the engine.
			case dir == rel && !announce:
				return fmt.Errorf("watch %s: %w", w.abs(dir), err)
			case errors.Is(err, fs.ErrPermission):
				// Unreadable, so not pollable either: the engine's scan
				// reports it as a problem.
				w.log.Warn("watch: cannot watch directory", "dir", w.abs(dir), "err", err)
			default:
				w.log.Warn("watch: cannot watch directory; polling it instead",
					"dir", w.abs(dir), "err", err, "poll_every", w.opts.PollEvery)
				w.poll.add(dir, announce)
			}
			continue
		}
		entries, err := os.ReadDir(w.abs(dir))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("watch: cannot list directory", "dir", w.abs(dir), "err", err)
		}
		for _, e := range entries {
			child := path.Join(dir, e.Name())
			if e.IsDir() {
				if !w.ignored(child, true) {
					stack = append(stack, child)
				}
				continue
			}
			if announce && !w.ignored(child, false) {
				w.touch(child, now)
			}
		}
	}
	return nil
}

// dirID is a directory's identity, which a rename keeps.
type dirID struct{ dev, ino uint64 }

func (w *Watcher) addWatch(dir string) error {
	if h := w.opts.addWatchHook; h != nil {
		if err := h(dir); err != nil {
			return err
		}
	}
	abs := w.abs(dir)
	fi, err := os.Lstat(abs)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("no device and inode for %s", abs)
	}
	id := dirID{uint64(st.Dev), st.Ino}
	w.mu.Lock()
	old, moved := w.byID[id]
	w.mu.Unlock()
	if moved && old != dir {
		// Moved here from old, and the event saying so is still on its
		// way. Adding would only return the watch registered under the
		// old name, so drop that first.
		w.dropTree(old)
	}
	if err := w.fsw.Add(abs); err != nil {
		return err
	}
	w.mu.Lock()
	if prev, had := w.dirs[dir]; had {
		delete(w.byID, prev)
	}
	w.dirs[dir] = id
	w.byID[id] = dir
	w.mu.Unlock()
	return nil
}

// noSpace hands dir's subtree to the poller, warning once per Watcher.
func (w *Watcher) noSpace(dir string, announce bool) {
	if !w.warnedNoSpace {
		w.warnedNoSpace = true
		limit := "unknown"
		if b, err := os.ReadFile("/proc/sys/fs/inotify/max_user_watches"); err == nil {
			limit = strings.TrimSpace(string(b))
		}
		w.log.Warn("watch: out of inotify watches (fs.inotify.max_user_watches="+limit+
			"); polling the directories that could not be watched instead, which is slower "+
			"to notice changes. Raise the limit with `sysctl -w fs.inotify.max_user_watches=524288` "+
			"(keep it in a file under /etc/sysctl.d/) and restart ferry",
			"dir", w.abs(dir), "poll_every", w.opts.PollEvery)
	} else {
		w.log.Debug("watch: out of inotify watches; polling", "dir", w.abs(dir))
	}
	w.poll.add(dir, announce)
}

func (w *Watcher) isWatched(rel string) bool {
	w.mu.Lock()
	_, ok := w.dirs[rel]
	w.mu.Unlock()
	return ok
}

// dropTree forgets the watches of rel and of every directory under it: after
// a rename they would report events under the old name.
func (w *Watcher) dropTree(rel string) {
	prefix := rel + "/"
	var gone []string
	w.mu.Lock()
	for d, id := range w.dirs {
		if d == rel || rel == "" || strings.HasPrefix(d, prefix) {
			gone = append(gone, d)
			delete(w.dirs, d)
			if w.byID[id] == d {
				delete(w.byID, id)
			}
		}
	}
	w.mu.Unlock()
	for _, d := range gone {
		// The kernel drops the watch of a deleted directory by itself, and
		// fsnotify then reports the removal as an error: nothing to do.
		_ = w.fsw.Remove(w.abs(d))
	}
}

// lostRoot handles the root itself being removed or renamed away: its
// watches now mean nothing, so the root is polled until it is back, and the
// engine is told to look at everything.
func (w *Watcher) lostRoot() {
	w.log.Warn("watch: the watched directory was removed or renamed; polling it instead",
		"root", w.root, "poll_every", w.opts.PollEvery)
	w.dropTree("")
	w.emit(Hint{Path: "", Rescan: true})
	w.poll.add("", false)
}

// handleError reacts to fsnotify's errors. Each may mean lost events, so
// each asks for a rescan of the root.
func (w *Watcher) handleError(err error) {
	if errors.Is(err, fsnotify.ErrEventOverflow) {
		w.log.Warn("watch: inotify event queue overflowed (fs.inotify.max_queued_events); "+
			"asking for a full rescan", "root", w.root)
	} else {
		w.log.Warn("watch: inotify error; asking for a full rescan", "root", w.root, "err", err)
	}
	w.emit(Hint{Path: "", Rescan: true})
}
