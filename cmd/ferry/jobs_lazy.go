package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// lazyBackend opens its target on first use and again after a failed open,
// so that a long-running job can start while a target is down: until it
// answers, every call fails with the open's error (backends.ErrUnreachable
// for a dead server), which the job's breaker and prober handle like any
// unreachable target. Safe for concurrent use; opens are not concurrent.
type lazyBackend struct {
	name string
	open func(ctx context.Context) (backends.Backend, error)

	mu     sync.Mutex
	b      backends.Backend
	closed bool
}

func (l *lazyBackend) get(ctx context.Context) (backends.Backend, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, backends.Permanent(fmt.Errorf("target %s: closed", l.name))
	}
	if l.b != nil {
		return l.b, nil
	}
	b, err := l.open(ctx)
	if err != nil {
		return nil, fmt.Errorf("open target %s: %w", l.name, err)
	}
	l.b = b
	return b, nil
}

func (l *lazyBackend) Stat(ctx context.Context, p string) (backends.FileInfo, error) {
	b, err := l.get(ctx)
	if err != nil {
		return backends.FileInfo{}, err
	}
	return b.Stat(ctx, p)
}

func (l *lazyBackend) List(ctx context.Context, dir string) ([]backends.FileInfo, error) {
	b, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return b.List(ctx, dir)
}

func (l *lazyBackend) Mkdir(ctx context.Context, p string) error {
	b, err := l.get(ctx)
	if err != nil {
		return err
	}
	return b.Mkdir(ctx, p)
}

func (l *lazyBackend) Remove(ctx context.Context, p string) error {
	b, err := l.get(ctx)
	if err != nil {
		return err
	}
	return b.Remove(ctx, p)
}

func (l *lazyBackend) Rename(ctx context.Context, from, to string) error {
	b, err := l.get(ctx)
	if err != nil {
		return err
	}
	return b.Rename(ctx, from, to)
}

func (l *lazyBackend) SetModTime(ctx context.Context, p string, t time.Time) error {
	b, err := l.get(ctx)
	if err != nil {
		return err
	}
	return b.SetModTime(ctx, p, t)
}

func (l *lazyBackend) Open(ctx context.Context, p string, off int64) (io.ReadCloser, error) {
	b, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return b.Open(ctx, p, off)
}

func (l *lazyBackend) Upload(ctx context.Context, p string, src backends.Source) (backends.UploadResult, error) {
	b, err := l.get(ctx)
	if err != nil {
		return backends.UploadResult{}, err
	}
	return b.Upload(ctx, p, src)
}

// Close closes the target if it was opened.
func (l *lazyBackend) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.b == nil {
		return nil
	}
	return l.b.Close()
}

// Unwrap gives the opened target, so that its capabilities (symlinks,
// hashing, chmod) are found; nil until it is open.
func (l *lazyBackend) Unwrap() backends.Backend {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b
}

var (
	_ backends.Backend = (*lazyBackend)(nil)
	_ backends.Wrapper = (*lazyBackend)(nil)
)
