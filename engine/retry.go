package engine

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/ferrysync/ferry/backends"
)

// Backoff computes the wait before a retry: exponential growth from Base,
// capped at Max, with full jitter (a uniform draw between zero and the
// capped value), so that workers failing together do not retry together.
type Backoff struct {
	Base, Max time.Duration
	// Jitter returns a uniform duration in [0, d]; nil uses math/rand/v2.
	// Tests set it to make delays predictable.
	Jitter func(d time.Duration) time.Duration
}

// Delay returns the wait before retry number attempt (0 for the first retry).
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Base
	for i := 0; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	if d > b.Max {
		d = b.Max
	}
	if d <= 0 {
		return 0
	}
	if b.Jitter != nil {
		return b.Jitter(d)
	}
	return rand.N(d + 1)
}

// DelayFor returns the wait before retry number attempt after err: the
// backoff's delay, or longer when the target asked for a longer pause (an
// S3 Retry-After, see backends.RetryAfter). The target's word is capped at
// Max so a bogus header cannot park a worker for hours.
func (b Backoff) DelayFor(attempt int, err error) time.Duration {
	d := b.Delay(attempt)
	if ra, ok := backends.RetryAfter(err); ok && ra > d {
		d = min(ra, max(b.Max, d))
	}
	return d
}

// sleepCtx waits for d or until ctx is done, whichever comes first; it
// returns ctx.Err() when cancelled.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
