package engine

import (
	"testing"
	"time"
)

// TestBackoffJitterSpreads checks that the default backoff really jitters:
// many delays for the same attempt must spread over [0, ceiling], not sit
// at one value. TestBackoffFullJitterWithinBounds checks only the bounds, so
// a backoff without jitter (every retry of every file at the same moment,
// all hitting the server together) passes it. With 400 uniform samples the
// chance of a check below failing by bad luck is below 1e-12.
func TestBackoffJitterSpreads(t *testing.T) {
	cases := []struct {
		name    string
		b       Backoff
		attempt int
		ceil    time.Duration
	}{
		{"first retry", Backoff{Base: 100 * time.Millisecond, Max: 10 * time.Second}, 0, 100 * time.Millisecond},
		{"doubled twice", Backoff{Base: 100 * time.Millisecond, Max: 10 * time.Second}, 2, 400 * time.Millisecond},
		{"capped at max", Backoff{Base: 100 * time.Millisecond, Max: time.Second}, 10, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi := tc.ceil, time.Duration(0)
			distinct := map[time.Duration]bool{}
			var low, high int
			for range 400 {
				d := tc.b.Delay(tc.attempt)
				if d < 0 || d > tc.ceil {
					t.Fatalf("Delay(%d) = %v, outside [0, %v]", tc.attempt, d, tc.ceil)
				}
				lo, hi = min(lo, d), max(hi, d)
				distinct[d] = true
				if d < tc.ceil/4 {
					low++
				}
				if d > tc.ceil*3/4 {
					high++
				}
			}
			if len(distinct) < 300 || low < 40 || high < 40 {
				t.Errorf("400 delays for attempt %d: %d distinct, %d in the lowest quarter, %d in the highest, range [%v, %v]: not a full jitter over [0, %v]",
					tc.attempt, len(distinct), low, high, lo, hi, tc.ceil)
			}
		})
	}
}
