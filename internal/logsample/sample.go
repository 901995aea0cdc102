package logsample

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Sampler lets burst lines through at once, then one every every, and
// counts those it holds back. Its methods are safe for concurrent use.
type Sampler struct {
	lim *rate.Limiter

	mu      sync.Mutex
	dropped int // guarded by mu; lines held back since the last one let through
}

// New returns a Sampler; zero every means 10s, zero burst 5.
func New(every time.Duration, burst int) *Sampler {
	if every <= 0 {
		every = 10 * time.Second
	}
	if burst <= 0 {
		burst = 5
	}
	return &Sampler{lim: rate.NewLimiter(rate.Every(every), burst)}
}

// Sample reports whether to write a line now and, when so, how many lines
// were held back before it (to be said in the line). A caller that writes
// its line itself uses Sample; Log does both.
func (s *Sampler) Sample() (ok bool, dropped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lim.Allow() {
		s.dropped++
		return false, 0
	}
	dropped, s.dropped = s.dropped, 0
	return true, dropped
}

// Log writes msg with args at level to log if the sampler lets it through,
// adding "suppressed" with how many lines were held back before it, if
// any; otherwise it counts it. It reports whether the line was written.
func (s *Sampler) Log(log *slog.Logger, level slog.Level, msg string, args ...any) bool {
	ok, dropped := s.Sample()
	if !ok {
		return false
	}
	if dropped > 0 {
		args = append(args, "suppressed", dropped)
	}
	log.Log(context.Background(), level, msg, args...)
	return true
}
