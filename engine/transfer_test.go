package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

var errFlaky = errors.New("connection reset (test)")

func identityJitter(d time.Duration) time.Duration { return d }

func TestExecuteRetries(t *testing.T) {
	tests := []struct {
		name        string
		failures    int   // attempts of a.txt that fail before success
		failErr     error // what they fail with
		retries     int
		wantAtt     int
		wantOK      bool
		wantDelays  []time.Duration
		wantProblem bool
	}{
		{name: "retryable twice then ok", failures: 2, failErr: errFlaky, retries: 5, wantAtt: 3, wantOK: true,
			wantDelays: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}},
		{name: "backoff capped at max", failures: 5, failErr: errFlaky, retries: 5, wantAtt: 6, wantOK: true,
			wantDelays: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond}},
		{name: "retries exhausted", failures: 100, failErr: errFlaky, retries: 2, wantAtt: 3, wantProblem: true,
			wantDelays: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}},
		{name: "permanent not retried", failures: 100, failErr: fmt.Errorf("upload: %w", backends.ErrPermission), retries: 5, wantAtt: 1, wantProblem: true},
		{name: "marked permanent not retried", failures: 100, failErr: backends.Permanent(errFlaky), retries: 5, wantAtt: 1, wantProblem: true},
		{name: "no space not retried", failures: 100, failErr: backends.ErrNoSpace, retries: 5, wantAtt: 1, wantProblem: true},
		{name: "unreachable retried", failures: 1, failErr: backends.ErrUnreachable, retries: 5, wantAtt: 2, wantOK: true,
			wantDelays: []time.Duration{100 * time.Millisecond}},
		{name: "negative retries means one attempt", failures: 1, failErr: errFlaky, retries: -1, wantAtt: 1, wantProblem: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			a := writeSrc(t, root, "a.txt", []byte("alpha"))
			b := writeSrc(t, root, "dir/b.txt", []byte("bravo"))
			fb := newFake()
			fb.beforeUpload = func(ctx context.Context, path string, src backends.Source, attempt int) error {
				if path == "a.txt" && attempt <= tc.failures {
					return tc.failErr
				}
				return nil
			}
			ns := &noSleep{}
			rep := Execute(context.Background(), Plan{Ops: []Op{uploadOp(a), uploadOp(b)}}, root, fb, ExecOptions{
				Retries: tc.retries,
				Backoff: Backoff{Base: 100 * time.Millisecond, Max: 400 * time.Millisecond, Jitter: identityJitter},
				Sleep:   ns.sleep,
			})
			if got := fb.attemptsOf("a.txt"); got != tc.wantAtt {
				t.Errorf("attempts of a.txt = %d, want %d", got, tc.wantAtt)
			}
			if got := ns.all(); !reflect.DeepEqual(got, tc.wantDelays) {
				t.Errorf("backoff delays = %v, want %v", got, tc.wantDelays)
			}
			_, ok := fb.content("a.txt")
			if ok != tc.wantOK {
				t.Errorf("a.txt published = %v, want %v", ok, tc.wantOK)
			}
			if got, ok := fb.content("dir/b.txt"); !ok || string(got) != "bravo" {
				t.Errorf("the other file was not uploaded: %q %v", got, ok)
			}
			if gotP := len(rep.Problems) == 1 && rep.Problems[0].Path == "a.txt"; gotP != tc.wantProblem {
				t.Errorf("problems = %v, want a problem for a.txt: %v", rep.Problems, tc.wantProblem)
			}
			if tc.wantProblem && !errors.Is(rep.Problems[0].Err, tc.failErr) {
				t.Errorf("problem error %v does not wrap %v", rep.Problems[0].Err, tc.failErr)
			}
			if rep.Failed() != tc.wantProblem {
				t.Errorf("Failed() = %v, want %v", rep.Failed(), tc.wantProblem)
			}
		})
	}
}

func TestBackoffFullJitterWithinBounds(t *testing.T) {
	b := Backoff{Base: 10 * time.Millisecond, Max: time.Second}
	for attempt := range 12 {
		ceil := min(b.Base<<attempt, b.Max)
		for range 50 {
			if d := b.Delay(attempt); d < 0 || d > ceil {
				t.Fatalf("Delay(%d) = %v, want within [0, %v]", attempt, d, ceil)
			}
		}
	}
}

func TestExecuteSourceChanged(t *testing.T) {
	tests := []struct {
		name         string
		changeTimes  int // attempts during which the source is rewritten
		remove       bool
		wantContent  string
		wantProblem  bool
		wantVanished bool
	}{
		{name: "changed once is re-planned", changeTimes: 1, wantContent: "version 2 longer"},
		{name: "changed three times still ok", changeTimes: 3, wantContent: "version 4 longer"},
		{name: "keeps changing gives up", changeTimes: 100, wantProblem: true},
		{name: "vanished is a warning", remove: true, wantVanished: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			e := writeSrc(t, root, "f.txt", []byte("version 1"))
			local := filepath.Join(root, "f.txt")
			fb := newFake()
			fb.afterRead = func(path string, attempt int) {
				if tc.remove {
					os.Remove(local)
					return
				}
				if attempt <= tc.changeTimes {
					content := fmt.Sprintf("version %d longer", attempt+1)
					if err := os.WriteFile(local, []byte(content), 0o644); err != nil {
						t.Error(err)
					}
					// Make sure the mtime moves even on coarse clocks.
					mt := time.Now().Add(time.Duration(attempt) * time.Second)
					os.Chtimes(local, mt, mt)
				}
			}
			ns := &noSleep{}
			rep := Execute(context.Background(), Plan{Ops: []Op{uploadOp(e)}}, root, fb, ExecOptions{Sleep: ns.sleep})
			got, ok := fb.content("f.txt")
			switch {
			case tc.wantContent != "":
				if !ok || string(got) != tc.wantContent {
					t.Errorf("target holds %q (published %v), want %q", got, ok, tc.wantContent)
				}
				if len(rep.Problems) != 0 {
					t.Errorf("problems: %v", rep.Problems)
				}
			case ok:
				t.Errorf("a changing file was published: %q", got)
			}
			if tc.wantProblem && (len(rep.Problems) != 1 || !errors.Is(rep.Problems[0].Err, backends.ErrSourceChanged)) {
				t.Errorf("problems = %v, want one wrapping ErrSourceChanged", rep.Problems)
			}
			if tc.wantVanished && (!reflect.DeepEqual(rep.Vanished, []string{"f.txt"}) || len(rep.Problems) != 0) {
				t.Errorf("vanished = %v problems = %v, want f.txt vanished and no problem", rep.Vanished, rep.Problems)
			}
			if len(ns.all()) != 0 {
				t.Errorf("a source change waited for backoff: %v", ns.all())
			}
		})
	}
}

func TestExecuteSourceChangedBeforeOpen(t *testing.T) {
	root := t.TempDir()
	e := writeSrc(t, root, "f.txt", []byte("old"))
	if err := os.WriteFile(filepath.Join(root, "f.txt"), []byte("new and longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	fb := newFake()
	rep := Execute(context.Background(), Plan{Ops: []Op{uploadOp(e)}}, root, fb, ExecOptions{})
	if got, _ := fb.content("f.txt"); string(got) != "new and longer" || len(rep.Problems) != 0 {
		t.Fatalf("target = %q problems = %v, want the new content", got, rep.Problems)
	}
	if fb.attemptsOf("f.txt") != 1 {
		t.Errorf("an upload was attempted with stale size: %d attempts", fb.attemptsOf("f.txt"))
	}
}

func TestExecuteCancelStopsPromptly(t *testing.T) {
	root := t.TempDir()
	var ops []Op
	for i := range 200 {
		ops = append(ops, uploadOp(writeSrc(t, root, fmt.Sprintf("d%d/f%d", i%7, i), bytes.Repeat([]byte{byte(i)}, 100))))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var started atomic.Int32
	fb := newFake()
	fb.beforeUpload = func(ctx context.Context, path string, src backends.Source, attempt int) error {
		if started.Add(1) == 10 {
			cancel()
		}
		<-ctx.Done() // a slow link: only cancel ends it
		return fmt.Errorf("upload %s: %w", path, ctx.Err())
	}
	done := make(chan Report)
	go func() { done <- Execute(ctx, Plan{Ops: ops}, root, fb, ExecOptions{SmallFileConcurrency: 16}) }()
	select {
	case rep := <-done:
		if !errors.Is(rep.Err, context.Canceled) {
			t.Errorf("report Err = %v, want context.Canceled", rep.Err)
		}
		if len(rep.Problems) != 0 {
			t.Errorf("a cancelled run reported %d problems, e.g. %v", len(rep.Problems), rep.Problems[0])
		}
		if n := started.Load(); n > 16 {
			t.Errorf("%d uploads started after cancel, want at most the 16 in flight", n)
		}
		if !rep.Failed() {
			t.Error("a cancelled run is not Failed()")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Execute did not return after cancel")
	}
}

func TestExecuteBandwidthLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time run")
	}
	root := t.TempDir()
	const size = 192 << 10
	a := writeSrc(t, root, "a", bytes.Repeat([]byte("a"), size))
	b := writeSrc(t, root, "b", bytes.Repeat([]byte("b"), size))
	const limit = 256 << 10
	fb := newFake()
	start := time.Now()
	rep := Execute(context.Background(), Plan{Ops: []Op{uploadOp(a), uploadOp(b)}}, root, fb, ExecOptions{BWLimit: limit})
	elapsed := time.Since(start)
	if rep.Uploaded != 2 {
		t.Fatalf("uploaded %d, problems %v", rep.Uploaded, rep.Problems)
	}
	// A token bucket lets at most its burst through at once; the rest
	// must wait for tokens. Only the lower bound is timing-independent.
	burst := newLimiter(limit).Burst()
	minTime := time.Duration(float64(2*size-burst) / limit * float64(time.Second))
	if elapsed < minTime {
		t.Errorf("sent %d bytes in %v, faster than the limit allows (%v)", 2*size, elapsed, minTime)
	}
	if elapsed > 30*time.Second {
		t.Errorf("took %v, far slower than the limit", elapsed)
	}
}

// recordingProgress checks the event stream per file.
type recordingProgress struct {
	mu      sync.Mutex
	totals  [2]int64
	bytes   map[string]int64
	started map[string]int
	done    map[string]int64
	failed  map[string]bool
}

func newRecording() *recordingProgress {
	return &recordingProgress{bytes: map[string]int64{}, started: map[string]int{}, done: map[string]int64{}, failed: map[string]bool{}}
}

func (r *recordingProgress) Totals(files int, bytes int64) {
	r.mu.Lock()
	r.totals = [2]int64{int64(files), bytes}
	r.mu.Unlock()
}
func (r *recordingProgress) FileStarted(path string, size int64) {
	r.mu.Lock()
	r.started[path]++
	r.mu.Unlock()
}
func (r *recordingProgress) Bytes(path string, n int64) {
	r.mu.Lock()
	r.bytes[path] += n
	r.mu.Unlock()
}
func (r *recordingProgress) FileDone(path string, size, resumed int64) {
	r.mu.Lock()
	r.done[path] = size
	r.mu.Unlock()
}
func (r *recordingProgress) FileFailed(path string, err error) {
	r.mu.Lock()
	r.failed[path] = true
	r.mu.Unlock()
}

func TestExecuteProgressAddsUp(t *testing.T) {
	root := t.TempDir()
	var ops []Op
	var total int64
	for i := range 40 {
		size := i * 3000 // some above, some below the small-file size
		e := writeSrc(t, root, fmt.Sprintf("p/f%02d", i), bytes.Repeat([]byte{'x'}, size))
		ops = append(ops, uploadOp(e))
		total += int64(size)
	}
	fb := newFake()
	fb.beforeUpload = func(ctx context.Context, path string, src backends.Source, attempt int) error {
		// Read a little, then fail: the retry must roll the bytes back.
		if attempt == 1 && path >= "p/f30" {
			src.ReadAt(make([]byte, min(src.Size(), 1000)), 0)
			if path == "p/f39" {
				return backends.Permanent(errFlaky)
			}
			return errFlaky
		}
		return nil
	}
	rec := newRecording()
	counter := &Counter{}
	ns := &noSleep{}
	rep := Execute(context.Background(), Plan{Ops: ops}, root, fb, ExecOptions{
		Progress: MultiProgress(rec, counter), Sleep: ns.sleep, SmallFileSize: 50000, Transfers: 2, SmallFileConcurrency: 5,
	})
	if rec.totals != [2]int64{40, total} {
		t.Errorf("totals = %v, want 40 files %d bytes", rec.totals, total)
	}
	for _, op := range ops {
		p := op.Path
		switch {
		case p == "p/f39":
			if !rec.failed[p] || rec.bytes[p] != 0 {
				t.Errorf("%s: failed=%v bytes=%d, want failed with bytes rolled back", p, rec.failed[p], rec.bytes[p])
			}
		default:
			if rec.done[p] != op.Src.Size || rec.bytes[p] != op.Src.Size || rec.started[p] != 1 {
				t.Errorf("%s: done=%d bytes=%d started=%d, want size %d", p, rec.done[p], rec.bytes[p], rec.started[p], op.Src.Size)
			}
		}
	}
	s := counter.Snapshot()
	if s.DoneFiles != int64(rep.Uploaded) || s.FailedFiles != 1 || s.Bytes != rep.UploadedBytes || s.Active != 0 {
		t.Errorf("counter %+v disagrees with report uploaded=%d bytes=%d", s, rep.Uploaded, rep.UploadedBytes)
	}
	if rep.Uploaded != 39 || rep.UploadedBytes != total-39*3000 {
		t.Errorf("report uploaded %d files %d bytes", rep.Uploaded, rep.UploadedBytes)
	}
	if fb.maxActiv > 2+5 {
		t.Errorf("%d uploads in flight, want at most transfers+small concurrency = 7", fb.maxActiv)
	}
}

func TestExecuteConcurrencyLimits(t *testing.T) {
	root := t.TempDir()
	var ops []Op
	for i := range 12 {
		ops = append(ops, uploadOp(writeSrc(t, root, fmt.Sprintf("big%02d", i), bytes.Repeat([]byte{'b'}, 2000))))
	}
	for i := range 40 {
		ops = append(ops, uploadOp(writeSrc(t, root, fmt.Sprintf("small%02d", i), []byte("s"))))
	}
	var mu sync.Mutex
	active := map[bool]int{}
	peak := map[bool]int{}
	fb := newFake()
	fb.beforeUpload = func(ctx context.Context, path string, src backends.Source, attempt int) error {
		big := src.Size() > 1000
		mu.Lock()
		active[big]++
		peak[big] = max(peak[big], active[big])
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		active[big]--
		mu.Unlock()
		return nil
	}
	rep := Execute(context.Background(), Plan{Ops: ops}, root, fb, ExecOptions{Transfers: 3, SmallFileConcurrency: 8, SmallFileSize: 1000})
	if rep.Uploaded != 52 {
		t.Fatalf("uploaded %d, problems %v", rep.Uploaded, rep.Problems)
	}
	if peak[true] > 3 || peak[false] > 8 {
		t.Errorf("peak in flight: large %d (limit 3), small %d (limit 8)", peak[true], peak[false])
	}
	if peak[false] < 2 {
		t.Errorf("small files never ran concurrently (peak %d)", peak[false])
	}
}

func TestPhases(t *testing.T) {
	op := func(k OpKind, p string) Op { return Op{Kind: k, Path: p} }
	ops := []Op{
		op(OpMkdir, "a"), op(OpMkdir, "a/b"),
		op(OpUpload, "a/f"), op(OpSymlink, "a/l"), op(OpUpload, "a/g"),
		op(OpSetModTime, "a/h"),
		op(OpDelete, "x/y/z"), op(OpDelete, "x/y/w"), op(OpDelete, "x/y"), op(OpDelete, "q"), op(OpDelete, "x"),
		op(OpSetModTime, "a"),
	}
	var got [][]string
	for _, ph := range phases(ops) {
		var names []string
		for _, o := range ph {
			names = append(names, o.Kind.String()+" "+o.Path)
		}
		got = append(got, names)
	}
	want := [][]string{
		{"mkdir a", "mkdir a/b"},
		{"upload a/f", "symlink a/l", "upload a/g"},
		{"touch a/h"},
		{"delete x/y/z", "delete x/y/w"},
		{"delete x/y"},
		{"delete q", "delete x"},
		{"touch a"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("phases =\n%v\nwant\n%v", got, want)
	}
}

func TestExecuteOtherOps(t *testing.T) {
	root := t.TempDir()
	mt := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	link := backends.FileInfo{Path: "ln", Mode: os.ModeSymlink | 0o777, LinkTarget: "a/f"}
	ops := []Op{
		{Kind: OpMkdir, Path: "a", Src: backends.FileInfo{Path: "a", Mode: os.ModeDir | 0o755}},
		{Kind: OpSymlink, Path: "ln", Src: link},
		{Kind: OpSetModTime, Path: "a/old", Src: backends.FileInfo{Path: "a/old", ModTime: mt, Mode: 0o644}},
		{Kind: OpDelete, Path: "gone/deep"},
		{Kind: OpDelete, Path: "gone"},
		{Kind: OpDelete, Path: "never-there"},
	}
	t.Run("with symlinks", func(t *testing.T) {
		fb := newFake()
		fb.files["gone/deep"] = []byte("x")
		fb.dirs["gone"] = true
		sf := &symlinkFake{fakeBackend: fb}
		rep := Execute(context.Background(), Plan{Ops: ops}, root, sf, ExecOptions{})
		if rep.Mkdirs != 1 || rep.Symlinks != 1 || rep.Touched != 1 || rep.Deleted != 3 || len(rep.Problems) != 0 {
			t.Errorf("report %+v", rep)
		}
		if v, _ := sf.links.Load("ln"); v != "a/f" {
			t.Errorf("symlink ln -> %v", v)
		}
		if !fb.mtimes["a/old"].Equal(mt) {
			t.Errorf("mtime of a/old = %v", fb.mtimes["a/old"])
		}
		if fb.dirs["gone"] {
			t.Error("directory gone was not removed after its contents")
		}
	})
	t.Run("without symlinks", func(t *testing.T) {
		fb := newFake()
		rep := Execute(context.Background(), Plan{Ops: ops[:2]}, root, fb, ExecOptions{})
		if len(rep.Skipped) != 1 || rep.Skipped[0].Path != "ln" || len(rep.Problems) != 0 || rep.Failed() {
			t.Errorf("skipped %v problems %v, want ln skipped as a warning", rep.Skipped, rep.Problems)
		}
	})
}

func TestExecuteStalePartials(t *testing.T) {
	root := t.TempDir()
	e := writeSrc(t, root, "d/f", []byte("content"))
	synced := writeSrc(t, root, "d/s", []byte("synced"))
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	own := backends.PartialName("d/f", e.Size, e.ModTime)
	// Partials of d/s as the source holds it, which needs no upload: an
	// upload published it and could not remove them.
	done := backends.PartialName("d/s", synced.Size, synced.ModTime)
	doneKey, _ := backends.PartialKey(done)
	doneCopy := doneKey + ".0badc0de-s"
	// A partial of d/s at another size: young, kept.
	otherVersion := backends.PartialName("d/s", synced.Size+1, synced.ModTime)
	old := backends.PartialName("d/x", 10, now.Add(-time.Hour))
	young := backends.PartialName("d/y", 10, now)
	doomed := backends.PartialName("old/z", 10, now)
	link := backends.PartialPrefix + "link-00161ec9a35cfe7c" // a killed symlink replace
	fb := newFake()
	fb.beforeUpload = func(ctx context.Context, path string, src backends.Source, attempt int) error {
		return backends.Permanent(errFlaky) // the partial of d/f must stay anyway
	}
	fb.dirs["old"] = true
	for _, p := range []string{own, old, young, doomed, link, done, doneCopy, otherVersion} {
		fb.files[p] = []byte("partial")
	}
	partials := []backends.FileInfo{
		{Path: own, ModTime: now.Add(-48 * time.Hour)},
		{Path: old, ModTime: now.Add(-25 * time.Hour)},
		{Path: young, ModTime: now.Add(-time.Hour)},
		{Path: doomed, ModTime: now.Add(-time.Hour)},
		{Path: link, ModTime: now.Add(-time.Minute), Mode: fs.ModeSymlink},
		{Path: done, ModTime: now.Add(-time.Minute)},
		{Path: doneCopy, ModTime: now.Add(-time.Minute)},
		{Path: otherVersion, ModTime: now.Add(-time.Minute)},
	}
	ops := []Op{uploadOp(e), {Kind: OpDelete, Path: "old", Reason: "extraneous"}}
	rep := Execute(context.Background(), Plan{Ops: ops}, root, fb, ExecOptions{
		Partials: partials, Now: func() time.Time { return now },
	})
	for p, want := range map[string]bool{own: true, old: false, young: true, doomed: false, link: false,
		done: false, doneCopy: false, otherVersion: true} {
		if _, ok := fb.content(p); ok != want {
			t.Errorf("partial %s present = %v, want %v", p, ok, want)
		}
	}
	if rep.PartialsRemoved != 5 {
		t.Errorf("PartialsRemoved = %d, want 5", rep.PartialsRemoved)
	}
	if fb.dirs["old"] || rep.Deleted != 1 {
		t.Errorf("directory old holding a young partial was not deleted: %v", rep.Problems)
	}
}

func TestExecuteBreaksOnDeadTarget(t *testing.T) {
	tests := []struct {
		name       string
		breakAfter int
		failEvery  bool // every upload fails, or only files named dead*
		wantBreak  bool
	}{
		{name: "dead target stops the run", breakAfter: 3, failEvery: true, wantBreak: true},
		{name: "breaker off", breakAfter: -1, failEvery: true},
		{name: "successes in between keep it closed", breakAfter: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			var ops []Op
			for i := range 60 {
				name := fmt.Sprintf("f%02d", i)
				if i%2 == 0 {
					name = fmt.Sprintf("dead%02d", i)
				}
				ops = append(ops, uploadOp(writeSrc(t, root, name, []byte(name))))
			}
			fb := newFake()
			fb.beforeUpload = func(ctx context.Context, path string, src backends.Source, attempt int) error {
				if tc.failEvery || path[0] == 'd' {
					return fmt.Errorf("write: %w", backends.ErrUnreachable)
				}
				return nil
			}
			ns := &noSleep{}
			rep := Execute(context.Background(), Plan{Ops: ops}, root, fb, ExecOptions{
				Retries: 1, Sleep: ns.sleep, SmallFileConcurrency: 1, BreakAfter: tc.breakAfter,
			})
			broke := errors.Is(rep.Err, backends.ErrUnreachable)
			if broke != tc.wantBreak {
				t.Fatalf("run stopped for an unreachable target: %v (Err %v), want %v", broke, rep.Err, tc.wantBreak)
			}
			switch {
			case tc.wantBreak && len(rep.Problems) != 3:
				t.Errorf("%d problems before the breaker opened, want 3", len(rep.Problems))
			case !tc.wantBreak && tc.failEvery && len(rep.Problems) != 60:
				t.Errorf("%d problems, want all 60 files tried", len(rep.Problems))
			case !tc.failEvery && (rep.Uploaded != 30 || len(rep.Problems) != 30):
				t.Errorf("uploaded %d, problems %d; want 30 and 30", rep.Uploaded, len(rep.Problems))
			}
		})
	}
}

// TestOpQueueClaims: every op is handed out exactly once and in order;
// with batching a claim stays inside one directory and takes at most a
// shrinking share of what is left; without it, one op at a time.
func TestOpQueueClaims(t *testing.T) {
	tree := func(dirs, files int) []Op {
		var ops []Op
		for d := range dirs {
			for f := range files {
				ops = append(ops, Op{Kind: OpUpload, Path: fmt.Sprintf("d%03d/f%03d", d, f)})
			}
		}
		return ops
	}
	tests := []struct {
		name        string
		ops         []Op
		workers     int
		batch       bool
		wantClaims  int // 0: not checked
		wantFirst   int // size of the first claim
		wantLastOne bool
	}{
		{"DirectoriesWhole", tree(100, 100), 32, true, 0, 100, true},
		{"OneBigDirectoryShares", tree(1, 10000), 32, true, 0, maxBatch, true},
		{"FlatFilesAtTheRoot", []Op{{Path: "a"}, {Path: "b"}, {Path: "c"}}, 32, true, 3, 1, true},
		{"OneFilePerDirectory", tree(50, 1), 4, true, 50, 1, true},
		{"NoBatching", tree(3, 10), 4, false, 30, 1, true},
		{"Empty", nil, 4, true, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newOpQueue(tt.ops, tt.workers, tt.batch)
			var got []Op
			var sizes []int
			for c := q.claim(); c != nil; c = q.claim() {
				dir := parentOf(c[0].Path)
				for _, op := range c {
					if parentOf(op.Path) != dir {
						t.Fatalf("claim %d crosses directories: %v", len(sizes), c)
					}
				}
				got = append(got, c...)
				sizes = append(sizes, len(c))
			}
			if len(got) != len(tt.ops) {
				t.Fatalf("handed out %d ops, want %d", len(got), len(tt.ops))
			}
			for i := range got {
				if got[i].Path != tt.ops[i].Path {
					t.Fatalf("op %d is %s, want %s", i, got[i].Path, tt.ops[i].Path)
				}
			}
			if tt.wantClaims != 0 && len(sizes) != tt.wantClaims {
				t.Errorf("%d claims, want %d", len(sizes), tt.wantClaims)
			}
			if len(sizes) > 0 && sizes[0] != tt.wantFirst {
				t.Errorf("first claim took %d ops, want %d", sizes[0], tt.wantFirst)
			}
			if tt.wantLastOne && sizes[len(sizes)-1] != 1 {
				t.Errorf("last claim took %d ops, want 1 so the tail spreads over workers", sizes[len(sizes)-1])
			}
		})
	}
}

// TestExecuteStopsClaimingOnCancel: once the context is cancelled, workers
// start no further ops, also none left in a batch they claimed.
func TestExecuteStopsClaimingOnCancel(t *testing.T) {
	root := t.TempDir()
	var ops []Op
	for i := range 200 {
		ops = append(ops, uploadOp(writeSrc(t, root, fmt.Sprintf("f%03d", i), []byte("s"))))
	}
	ctx, cancel := context.WithCancel(context.Background())
	var started atomic.Int64
	fb := newFake()
	// The lock holds the other worker until the cancel is complete: on a
	// loaded machine it could otherwise start several ops while the
	// cancelling goroutine waits to be scheduled, which says nothing of
	// the workers' checks.
	var mu sync.Mutex
	fb.beforeUpload = func(context.Context, string, backends.Source, int) error {
		mu.Lock()
		defer mu.Unlock()
		if started.Add(1) == 10 {
			cancel()
		}
		return nil
	}
	rep := Execute(ctx, Plan{Ops: ops}, root, fb, ExecOptions{SmallFileConcurrency: 2})
	if n := started.Load(); n > 11 {
		t.Errorf("%d uploads started with a cancel at the 10th; want at most 11 (2 workers, one in flight)", n)
	}
	if rep.Err == nil {
		t.Error("report of a cancelled run has no Err")
	}
}
