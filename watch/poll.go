package watch

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// pollStat is what a poll compares of one path.
type pollStat struct {
	size  int64
	mtime int64 // UnixNano
	mode  fs.FileMode
}

type pollReq struct {
	rel      string
	announce bool
	base     map[string]pollStat // taken when asked, without announce
	baseOK   bool
}

// poller walks subtrees that have no inotify watches and reports the paths
// that differ from its last walk. Its own goroutine owns the snapshots, so a
// slow walk never holds up the event loop.
type poller struct {
	root   string
	every  time.Duration
	ignore func(rel string, isDir bool) bool
	log    *slog.Logger
	out    chan []string

	mu    sync.Mutex // guards reqs and n
	reqs  []pollReq
	n     int
	kick  chan struct{}
	roots map[string]map[string]pollStat // owned by run
}

func newPoller(root string, every time.Duration, ignore func(string, bool) bool, log *slog.Logger) *poller {
	return &poller{
		root: root, every: every, ignore: ignore, log: log,
		out:   make(chan []string),
		kick:  make(chan struct{}, 1),
		roots: make(map[string]map[string]pollStat),
	}
}

// add asks for rel's subtree to be polled. With announce every path in it
// is reported by the first walk; without, the first walk is taken here and
// now, so that every change after add returns is reported. Safe from any
// goroutine; blocks only for that walk.
func (p *poller) add(rel string, announce bool) {
	req := pollReq{rel: rel, announce: announce}
	if !announce {
		req.base, req.baseOK = p.scan(rel)
	}
	p.mu.Lock()
	p.reqs = append(p.reqs, req)
	p.n++
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// count is the number of subtrees polled or about to be.
func (p *poller) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *poller) run(ctx context.Context) {
	var tick <-chan time.Time
	var ticker *time.Ticker
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
	}()
	for {
		var changed []string
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
			changed = p.takeRequests()
		case <-tick:
			changed = p.pollAll()
		}
		p.mu.Lock()
		p.n = len(p.roots) + len(p.reqs)
		p.mu.Unlock()
		if len(p.roots) > 0 && ticker == nil {
			ticker = time.NewTicker(p.every)
			tick = ticker.C
		}
		if len(changed) > 0 {
			select {
			case p.out <- changed:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (p *poller) takeRequests() []string {
	p.mu.Lock()
	reqs := p.reqs
	p.reqs = nil
	p.mu.Unlock()
	var changed []string
	for _, r := range reqs {
		if p.covered(r.rel) {
			continue
		}
		for old := range p.roots {
			if within(old, r.rel) {
				delete(p.roots, old)
			}
		}
		snap, ok := r.base, r.baseOK
		if r.announce {
			snap, ok = p.scan(r.rel)
		}
		if !ok {
			changed = append(changed, r.rel)
			if r.rel != "" { // the root stays polled so its return is noticed
				continue
			}
		}
		p.roots[r.rel] = snap
		if r.announce {
			changed = append(changed, r.rel)
			for k := range snap {
				changed = append(changed, k)
			}
		}
	}
	return changed
}

// covered reports whether rel lies in a subtree already polled.
func (p *poller) covered(rel string) bool {
	for old := range p.roots {
		if within(rel, old) {
			return true
		}
	}
	return false
}

// within reports whether rel is dir or lies under it.
func within(rel, dir string) bool {
	return dir == "" || rel == dir || strings.HasPrefix(rel, dir+"/")
}

func (p *poller) pollAll() []string {
	var changed []string
	for rel, old := range p.roots {
		snap, ok := p.scan(rel)
		if !ok {
			// Gone: the path itself is the hint. The root of the whole tree
			// stays polled so its return is noticed.
			changed = append(changed, rel)
			if rel != "" {
				delete(p.roots, rel)
				continue
			}
		}
		for k, st := range snap {
			if o, had := old[k]; !had || o != st {
				changed = append(changed, k)
			}
		}
		for k := range old {
			if _, has := snap[k]; !has {
				changed = append(changed, k)
			}
		}
		p.roots[rel] = snap
	}
	return changed
}

// scan lists everything under rel (not rel itself); ok is false when rel is
// not a directory any more.
func (p *poller) scan(rel string) (map[string]pollStat, bool) {
	abs := func(r string) string {
		if r == "" {
			return p.root
		}
		return filepath.Join(p.root, filepath.FromSlash(r))
	}
	if fi, err := os.Stat(abs(rel)); err != nil || !fi.IsDir() {
		return nil, false
	}
	snap := make(map[string]pollStat)
	stack := []string{rel}
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		entries, err := os.ReadDir(abs(dir))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			p.log.Debug("watch: poll cannot list directory", "dir", abs(dir), "err", err)
		}
		for _, e := range entries {
			child := path.Join(dir, e.Name())
			if p.ignore(child, e.IsDir()) {
				continue
			}
			fi, err := e.Info()
			if err != nil {
				continue // vanished since the listing
			}
			st := pollStat{mode: fi.Mode().Type()}
			if e.IsDir() {
				stack = append(stack, child)
			} else {
				st.size, st.mtime = fi.Size(), fi.ModTime().UnixNano()
			}
			snap[child] = st
		}
	}
	return snap, true
}
