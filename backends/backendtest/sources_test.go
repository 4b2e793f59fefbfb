package backendtest

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/ferrysync/ferry/backends"
)

func TestSources(t *testing.T) {
	data := []byte("0123456789")
	errCut := errors.New("cut")
	base := NewBytes(data, BaseTime)
	tests := []struct {
		name    string
		src     backends.Source
		off     int64
		n       int
		want    string
		wantErr error // nil: no error, or io.EOF at the end
	}{
		{"BytesMiddle", base, 2, 3, "234", nil},
		{"BytesToEnd", base, 7, 5, "789", io.EOF},
		{"BytesPastEnd", base, 10, 1, "", io.EOF},
		{"FailAfterBefore", FailAfter(base, 5, errCut), 0, 5, "01234", nil},
		{"FailAfterStraddles", FailAfter(base, 5, errCut), 3, 4, "34", errCut},
		{"FailAfterPast", FailAfter(base, 5, errCut), 5, 1, "", errCut},
		{"ShortStraddles", Short(base, 4), 2, 4, "23", io.EOF},
		{"ShortPast", Short(base, 4), 4, 1, "", io.EOF},
		{"ShortBefore", Short(base, 4), 0, 4, "0123", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := make([]byte, tt.n)
			n, err := tt.src.ReadAt(p, tt.off)
			if string(p[:n]) != tt.want {
				t.Errorf("ReadAt(%d, %d) read %q, want %q", tt.n, tt.off, p[:n], tt.want)
			}
			if tt.wantErr == nil && err != nil && !(err == io.EOF && n == tt.n) {
				t.Errorf("ReadAt error %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("ReadAt error %v, want %v", err, tt.wantErr)
			}
			if tt.src.Size() != int64(len(data)) {
				t.Errorf("Size %d, want the full %d", tt.src.Size(), len(data))
			}
		})
	}
	if err := Changed(base).Check(); !errors.Is(err, backends.ErrSourceChanged) {
		t.Errorf("Changed().Check() = %v", err)
	}
	if err := base.Check(); err != nil {
		t.Errorf("Bytes.Check() = %v", err)
	}
	var seen []int64
	src := OnRead(base, func(off int64) { seen = append(seen, off) })
	src.ReadAt(make([]byte, 2), 6)
	if len(seen) != 1 || seen[0] != 6 {
		t.Errorf("OnRead saw %v, want [6]", seen)
	}
}

func TestRandomBytes(t *testing.T) {
	a, b, c := RandomBytes(1000, 1), RandomBytes(1000, 1), RandomBytes(1000, 2)
	if !bytes.Equal(a, b) {
		t.Error("same seed gave different bytes")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds gave the same bytes")
	}
	if bytes.Equal(a, make([]byte, 1000)) {
		t.Error("RandomBytes gave zeros")
	}
}
