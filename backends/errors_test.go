package backends

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"syscall"
	"testing"
)

func TestIsPermanent(t *testing.T) {
	errOther := errors.New("some I/O error")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"Nil", nil, false},
		{"Plain", errOther, false},
		{"EOF", io.ErrUnexpectedEOF, false},
		{"NotExist", fmt.Errorf("stat x: %w", ErrNotExist), true},
		{"NotExistFromErrno", &fs.PathError{Op: "open", Path: "x", Err: syscall.ENOENT}, true},
		{"PermissionFromErrno", &fs.PathError{Op: "open", Path: "x", Err: syscall.EACCES}, true},
		{"Permission", ErrPermission, true},
		{"NoSpace", fmt.Errorf("write: %w", ErrNoSpace), true},
		{"UnsafePath", ErrUnsafePath, true},
		{"Auth", ErrAuth, true},
		{"Unsupported", ErrUnsupported, true},
		{"Canceled", fmt.Errorf("upload: %w", context.Canceled), true},
		{"DeadlineIsRetryable", context.DeadlineExceeded, false},
		{"Unreachable", ErrUnreachable, false},
		{"SourceChanged", ErrSourceChanged, false},
		{"MarkedPermanent", Permanent(errOther), true},
		{"MarkedRetryable", Retryable(fmt.Errorf("x: %w", ErrNoSpace)), false},
		{"OuterMarkWins", Permanent(fmt.Errorf("ctx: %w", Retryable(ErrNotExist))), true},
		{"OuterRetryableWins", Retryable(fmt.Errorf("ctx: %w", Permanent(errOther))), false},
		{"WrappedMark", fmt.Errorf("upload a: %w", Permanent(errOther)), true},
		{"Joined", errors.Join(errOther, ErrNoSpace), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsPermanent(tt.err); got != tt.want {
				t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestMarksKeepCauseAndText(t *testing.T) {
	if Permanent(nil) != nil || Retryable(nil) != nil {
		t.Fatal("marking nil must give nil")
	}
	cause := fmt.Errorf("rename a: %w", ErrNoSpace)
	for _, err := range []error{Permanent(cause), Retryable(cause)} {
		if !errors.Is(err, ErrNoSpace) || !errors.Is(err, cause) {
			t.Errorf("%v lost its cause", err)
		}
		if err.Error() != cause.Error() {
			t.Errorf("marked error reads %q, want %q", err, cause)
		}
	}
}

func TestIsUnsupported(t *testing.T) {
	if !IsUnsupported(fmt.Errorf("hash: %w", ErrUnsupported)) {
		t.Error("wrapped ErrUnsupported not recognised")
	}
	if IsUnsupported(ErrNotExist) || IsUnsupported(nil) {
		t.Error("other errors taken for ErrUnsupported")
	}
}
