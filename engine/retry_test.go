package engine

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

type retryAfterErr time.Duration

func (e retryAfterErr) Error() string             { return "slow down" }
func (e retryAfterErr) RetryAfter() time.Duration { return time.Duration(e) }

func TestBackoffDelayForHonoursRetryAfter(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: 10 * time.Second, Jitter: func(d time.Duration) time.Duration { return d }}
	tests := []struct {
		name string
		err  error
		want time.Duration
	}{
		{"NoHintKeepsBackoff", errors.New("boom"), 100 * time.Millisecond},
		{"ShorterHintKeepsBackoff", retryAfterErr(10 * time.Millisecond), 100 * time.Millisecond},
		{"LongerHintWins", fmt.Errorf("put x: %w", retryAfterErr(3*time.Second)), 3 * time.Second},
		{"HintCappedAtMax", retryAfterErr(time.Hour), 10 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := b.DelayFor(0, tc.err); got != tc.want {
				t.Errorf("DelayFor(0, %v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
