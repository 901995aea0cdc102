package connlimit

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Sampler lets through a few log lines of one kind per interval and
// counts the others; the next line let through carries that count as
// "suppressed". Its methods are safe for concurrent use.
type Sampler struct {
	lim *rate.Limiter

	mu         sync.Mutex
	suppressed int // guarded by mu; lines dropped since the last one written
}

// NewSampler returns a Sampler that writes at most burst lines at once and
// then one per every.
func NewSampler(every time.Duration, burst int) *Sampler {
	return &Sampler{lim: rate.NewLimiter(rate.Every(every), burst)}
}

// Log writes msg with args at level to log if the sampler lets it through,
// adding how many lines were suppressed before it; otherwise it counts it.
// It reports whether the line was written.
func (s *Sampler) Log(log *slog.Logger, level slog.Level, msg string, args ...any) bool {
	s.mu.Lock()
	if !s.lim.Allow() {
		s.suppressed++
		s.mu.Unlock()
		return false
	}
	n := s.suppressed
	s.suppressed = 0
	s.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Log(context.Background(), level, msg, args...)
	return true
}
