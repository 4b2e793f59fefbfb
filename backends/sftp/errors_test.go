package sftp

import (
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/ferrysync/ferry/backends"
	"github.com/pkg/sftp"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		class     error // nil: none of the classes
		permanent bool
	}{
		{"permission denied", os.ErrPermission, backends.ErrPermission, true},
		{"no such file", os.ErrNotExist, backends.ErrNotExist, true},
		{"connection lost", sftp.ErrSSHFxConnectionLost, backends.ErrUnreachable, false},
		{"eof from the transport", io.EOF, backends.ErrUnreachable, false},
		{"closed pipe under a custom Dial", fmt.Errorf("failed to send packet: %w", io.ErrClosedPipe), backends.ErrUnreachable, false},
		{"operation unsupported", &sftp.StatusError{Code: uint32(sftp.ErrSSHFxOpUnsupported)}, backends.ErrUnsupported, true},
		{"generic failure", &sftp.StatusError{Code: uint32(sftp.ErrSSHFxFailure)}, nil, false},
		{"already classified", fmt.Errorf("x: %w", backends.ErrNoSpace), backends.ErrNoSpace, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &conn{dead: make(chan struct{})} // no SSH client: kill only marks it dead
			got := classify(c, "op", "p", tt.err)
			if tt.class != nil && !errors.Is(got, tt.class) {
				t.Errorf("classify(%v) = %v, want it to wrap %v", tt.err, got, tt.class)
			}
			if tt.class == nil {
				for _, cl := range []error{backends.ErrUnreachable, backends.ErrNotExist, backends.ErrPermission, backends.ErrNoSpace} {
					if errors.Is(got, cl) {
						t.Errorf("classify(%v) = %v wraps %v", tt.err, got, cl)
					}
				}
			}
			if backends.IsPermanent(got) != tt.permanent {
				t.Errorf("classify(%v) permanent = %v, want %v", tt.err, !tt.permanent, tt.permanent)
			}
			if lost := !c.alive(); lost != errors.Is(tt.class, backends.ErrUnreachable) {
				t.Errorf("connection marked dead = %v after %v", lost, tt.err)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("classify(%v) = %v lost the cause", tt.err, got)
			}
		})
	}
}
