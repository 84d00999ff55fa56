package sesame

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// RetryPolicy is a bounded exponential backoff with jitter (AIP-194).
//
// UNAVAILABLE is retried, and an attempt's DEADLINE_EXCEEDED for a
// SubmitAccessRequest with a request_id (see WithAttemptTimeout); nothing
// else. MaxAttempts counts every attempt, the
// first included (1, or 0, disables retries). The wait before retry n (1, 2, ...) is
// min(MaxBackoff, InitialBackoff * Multiplier^(n-1)), scaled by a random
// factor in [1-Jitter, 1+Jitter].
type RetryPolicy struct {
	MaxAttempts    int
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Multiplier     float64
	Jitter         float64
}

// DefaultRetry is the policy of unary calls: up to 5 attempts, about 0.2 s,
// 0.4 s, 0.8 s and 1.6 s apart (+-20 %), always within the call's deadline.
var DefaultRetry = RetryPolicy{MaxAttempts: 5, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second, Multiplier: 2, Jitter: 0.2}

// DefaultWatchReconnect is the policy of watch streams: up to 10 consecutive
// attempts to reopen a broken stream, 0.2 s doubling to 5 s (about 25 s in all).
var DefaultWatchReconnect = RetryPolicy{MaxAttempts: 10, InitialBackoff: 200 * time.Millisecond, MaxBackoff: 5 * time.Second, Multiplier: 2, Jitter: 0.2}

// NoRetry makes every call a single attempt.
var NoRetry = RetryPolicy{MaxAttempts: 1}

// Backoff returns the wait before retry number retry (1-based).
func (p RetryPolicy) Backoff(retry int) time.Duration {
	multiplier := p.Multiplier
	if multiplier < 1 {
		multiplier = 1
	}
	base := float64(p.InitialBackoff) * math.Pow(multiplier, float64(retry-1))
	if p.MaxBackoff > 0 && base > float64(p.MaxBackoff) {
		base = float64(p.MaxBackoff)
	}
	jitter := min(max(p.Jitter, 0), 1)
	factor := 1 - jitter + 2*jitter*rand.Float64()
	return time.Duration(base * factor)
}

func (p RetryPolicy) attempts() int {
	return max(p.MaxAttempts, 1)
}

// sleep waits for d or until ctx ends; it reports whether the full wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
