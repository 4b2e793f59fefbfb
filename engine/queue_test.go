package engine

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestQueueCoalescing(t *testing.T) {
	for _, tc := range []struct {
		name  string
		push  []item
		want  []string // paths handed out, in order
		kinds []itemKind
	}{
		{"one entry per path", []item{{path: "a"}, {path: "b"}, {path: "a"}, {path: "a"}}, []string{"a", "b"}, []itemKind{itemPath, itemPath}},
		{"a pending ancestor covers its subtree", []item{{path: "d"}, {path: "d/x"}, {path: "d/y/z"}, {path: "e"}}, []string{"d", "e"}, []itemKind{itemPath, itemPath}},
		{"a pending root rescan covers everything", []item{{kind: itemFull}, {path: "a"}, {path: "b/c"}}, []string{""}, []itemKind{itemFull}},
		{"a rescan wins over a plain change", []item{{path: "d"}, {kind: itemFull, path: "d"}}, []string{"d"}, []itemKind{itemFull}},
		{"a rename replaces the old path's change", []item{{path: "old"}, {kind: itemRename, path: "new", from: "old"}}, []string{"new"}, []itemKind{itemRename}},
		{"a rename under a pending ancestor is kept", []item{{path: "d"}, {kind: itemRename, path: "d/n", from: "o"}}, []string{"d", "d/n"}, []itemKind{itemPath, itemRename}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newQueue()
			for _, it := range tc.push {
				q.push(&it)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			var got []string
			var kinds []itemKind
			for {
				if p, _ := q.counts(); p == 0 {
					break
				}
				it := q.next(ctx)
				if it == nil {
					t.Fatal("next returned nil with items pending")
				}
				got = append(got, it.path)
				kinds = append(kinds, it.kind)
				q.done(it)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || fmt.Sprint(kinds) != fmt.Sprint(tc.kinds) {
				t.Fatalf("handed out %q %v, want %q %v", got, kinds, tc.want, tc.kinds)
			}
		})
	}
}

func TestQueueOverlappingPathsNeverInFlightTogether(t *testing.T) {
	q := newQueue()
	q.push(&item{path: "a/b"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	first := q.next(ctx) // a/b
	// A change under a/b while a/b is in flight is kept (a/b's scan may
	// have missed it) but waits for a/b.
	q.push(&item{path: "a/b/c"})
	q.push(&item{path: "c"})
	second := q.next(ctx) // c
	if first.path != "a/b" || second.path != "c" {
		t.Fatalf("got %q and %q, want a/b and c", first.path, second.path)
	}
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if it := q.next(short); it != nil {
		t.Fatalf("handed out %q while its ancestor is in flight", it.path)
	}
	q.done(first)
	if it := q.next(ctx); it == nil || it.path != "a/b/c" {
		t.Fatalf("after the ancestor finished got %v, want a/b/c", it)
	}
}

func TestQueueRetryWaitsAndKeepsNewerChange(t *testing.T) {
	q := newQueue()
	q.push(&item{path: "f"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	it := q.next(ctx)
	q.done(it)
	start := time.Now()
	q.retry(it, 200*time.Millisecond)
	got := q.next(ctx)
	if got == nil || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("retry handed out after %v, want about 200ms", time.Since(start))
	}
	if got.attempts != 1 {
		t.Errorf("attempts %d, want 1", got.attempts)
	}
	q.done(got)
	// A failed attempt whose path changed again meanwhile: the new change
	// carries on at once, with no delay.
	q.push(&item{path: "f"})
	q.retry(got, time.Hour)
	short, cancel2 := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel2()
	if it := q.next(short); it == nil {
		t.Fatal("the newer change was held back by the old one's retry delay")
	}
}

func TestBreakerOpensAfterStreakAndCloses(t *testing.T) {
	b := newBreaker(3)
	for range 2 {
		if b.failure() {
			t.Fatal("opened before the threshold")
		}
	}
	_, changed := b.state()
	if !b.failure() {
		t.Fatal("third failure did not open")
	}
	select {
	case <-changed:
	default:
		t.Fatal("opening did not signal")
	}
	if open, _ := b.state(); !open || b.downSince().IsZero() {
		t.Fatal("not open")
	}
	if b.failure() {
		t.Fatal("opened twice")
	}
	if !b.success() {
		t.Fatal("success did not report closing")
	}
	if open, _ := b.state(); open {
		t.Fatal("still open after a success")
	}
	b.failure()
	b.success()
	for range 2 {
		if b.failure() {
			t.Fatal("a success did not reset the streak")
		}
	}
}
