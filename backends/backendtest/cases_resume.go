package backendtest

import (
	"bytes"
	"testing"
	"time"

	"github.com/ferrysync/ferry/backends"
)

func init() {
	register("ResumeAfterInterruptedUpload", testResume)
	register("ResumeDropsGarbageTail", testResumeGarbage)
	register("ResumeCutsOverlongPartial", testResumeOverlong)
	register("StalePartialNotUsed", testStalePartial)
}

func testResume(t *testing.T, e *env) {
	ctx, b := t.Context(), e.b
	if err := b.Mkdir(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	data := RandomBytes(5<<20+333, 5)
	cut := int64(3<<20 + 77)
	if _, err := b.Upload(ctx, "r/f", FailAfter(NewBytes(data, BaseTime), cut, errSourceRead)); err == nil {
		t.Fatalf("upload whose source fails at %d succeeded", cut)
	}
	WantNotExist(t, b, "r/f")
	if e.opts.NoPartialFiles {
		// What can be kept depends on the backend's unit of resumption
		// (a multipart upload's parts may all be larger than cut), so
		// only an impossible amount fails here.
		res := Upload(t, b, "r/f", data, BaseTime)
		if res.Resumed < 0 || res.Resumed > cut {
			t.Errorf("second upload resumed %d bytes, want 0..%d (what the first one read)", res.Resumed, cut)
		}
		if res.Resumed+res.Sent != int64(len(data)) {
			t.Errorf("resumed %d + sent %d != size %d", res.Resumed, res.Sent, len(data))
		}
		WantContent(t, b, "r/f", data)
		if got := List(t, b, "r"); len(got) != 1 {
			t.Errorf("List(r) = %v after the resumed upload, want only f", keys(got))
		}
		return
	}
	part := backends.PartialName("r/f", int64(len(data)), BaseTime)
	fi, err := b.Stat(ctx, part)
	if err != nil {
		t.Fatalf("no partial at %q after an interrupted upload: %v", part, err)
	}
	if fi.Size <= 0 || fi.Size > cut {
		t.Fatalf("partial holds %d bytes, want 1..%d", fi.Size, cut)
	}
	if _, name := backends.Split(part); !hasKey(List(t, b, "r"), name) {
		t.Errorf("List(r) does not show the partial %q", part)
	}

	res := Upload(t, b, "r/f", data, BaseTime)
	if res.Resumed <= 0 || res.Resumed > fi.Size {
		t.Errorf("second upload resumed %d bytes, want 1..%d (the partial's size)", res.Resumed, fi.Size)
	}
	if res.Resumed+res.Sent != int64(len(data)) {
		t.Errorf("resumed %d + sent %d != size %d", res.Resumed, res.Sent, len(data))
	}
	WantContent(t, b, "r/f", data)
	WantNotExist(t, b, part)
	if got := List(t, b, "r"); len(got) != 1 {
		t.Errorf("List(r) = %v after the resumed upload, want only f", keys(got))
	}
}

// plantPartial puts content at the partial name of an upload of (size,
// mtime) to path, using only the Backend contract: upload to a temporary name,
// then rename.
func plantPartial(t *testing.T, b backends.Backend, path string, size int64, mtime time.Time, content []byte) string {
	t.Helper()
	dir, _ := backends.Split(path)
	tmp := backends.Join(dir, "planted.tmp")
	Upload(t, b, tmp, content, BaseTime)
	part := backends.PartialName(path, size, mtime)
	if err := b.Rename(t.Context(), tmp, part); err != nil {
		t.Fatalf("rename planted partial: %v", err)
	}
	return part
}

func testResumeGarbage(t *testing.T, e *env) {
	if e.opts.NoPartialFiles {
		t.Skip("backend keeps no partial files to plant")
	}
	data := RandomBytes(2<<20, 6)
	good := int64(1<<20 + 11)
	planted := bytes.Clone(data[:good])
	for i := range 64 << 10 {
		planted = append(planted, data[good+int64(i)]^0x5a)
	}
	part := plantPartial(t, e.b, "g", int64(len(data)), BaseTime, planted)
	res := Upload(t, e.b, "g", data, BaseTime)
	t.Logf("planted %d bytes (%d good); resumed %d", len(planted), good, res.Resumed)
	if res.Resumed > good {
		t.Errorf("resumed %d bytes, more than the %d that match the source", res.Resumed, good)
	}
	WantContent(t, e.b, "g", data)
	WantNotExist(t, e.b, part)
}

func testResumeOverlong(t *testing.T, e *env) {
	if e.opts.NoPartialFiles {
		t.Skip("backend keeps no partial files to plant")
	}
	data := RandomBytes(1<<20+3, 8)
	planted := append(bytes.Clone(data), RandomBytes(4096, 9)...)
	part := plantPartial(t, e.b, "o", int64(len(data)), BaseTime, planted)
	res := Upload(t, e.b, "o", data, BaseTime)
	if res.Resumed > int64(len(data)) {
		t.Errorf("resumed %d bytes of a %d-byte file", res.Resumed, len(data))
	}
	WantContent(t, e.b, "o", data)
	WantNotExist(t, e.b, part)
}

func testStalePartial(t *testing.T, e *env) {
	ctx := t.Context()
	old := RandomBytes(1<<20+9, 10)
	if _, err := e.b.Upload(ctx, "s", FailAfter(NewBytes(old, BaseTime), 1<<19, errSourceRead)); err == nil {
		t.Fatal("interrupted upload succeeded")
	}
	tests := []struct {
		name  string
		data  []byte
		mtime time.Time
	}{
		{"SameSizeNewerMtime", RandomBytes(len(old), 11), BaseTime.Add(time.Second)},
		{"OtherSizeSameMtime", RandomBytes(len(old)-1, 12), BaseTime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Upload(t, e.b, "s", tt.data, tt.mtime)
			if res.Resumed != 0 {
				t.Errorf("upload resumed %d bytes from a partial of another version", res.Resumed)
			}
			WantContent(t, e.b, "s", tt.data)
		})
	}
}

func hasKey(m map[string]backends.FileInfo, k string) bool {
	_, ok := m[k]
	return ok
}
