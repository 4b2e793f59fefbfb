package backends

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

type askedDelay time.Duration

func (a askedDelay) Error() string             { return "slow down" }
func (a askedDelay) RetryAfter() time.Duration { return time.Duration(a) }

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		want   time.Duration
		wantOK bool
	}{
		{"Nil", nil, 0, false},
		{"Plain", errors.New("x"), 0, false},
		{"Asked", askedDelay(3 * time.Second), 3 * time.Second, true},
		{"WrappedAndClassified", Retryable(fmt.Errorf("put f: %w", askedDelay(time.Minute))), time.Minute, true},
		{"AskedZero", askedDelay(0), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := RetryAfter(tt.err)
			if d != tt.want || ok != tt.wantOK {
				t.Errorf("RetryAfter(%v) = %v, %v; want %v, %v", tt.err, d, ok, tt.want, tt.wantOK)
			}
		})
	}
}
