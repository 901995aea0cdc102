package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync/atomic"
)

// stopSignals turns SIGTERM and SIGINT into the worker's three stops, as
// buildkite's agent does: the first drains (the running commands finish
// and report, then the worker detaches), the second interrupts the
// running commands (they are killed and reported), the third exits at
// once (the commands still running are killed by the next start's
// reaper).
type stopSignals struct {
	drain     chan struct{}   // closed at the first signal
	interrupt context.Context // cancelled at the second
	cancel    context.CancelCauseFunc
	exit      func(code int) // the third signal's
	log       atomic.Pointer[slog.Logger]
}

// errInterrupted is the interrupt context's cause.
var errInterrupted = errors.New("second stop signal")

func newStopSignals(exit func(int)) *stopSignals {
	ctx, cancel := context.WithCancelCause(context.Background())
	s := &stopSignals{drain: make(chan struct{}), interrupt: ctx, cancel: cancel, exit: exit}
	s.log.Store(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	return s
}

// setLogger makes the stages log to log from now on.
func (s *stopSignals) setLogger(log *slog.Logger) { s.log.Store(log) }

// watch counts the signals from sigs until it is closed.
func (s *stopSignals) watch(sigs <-chan os.Signal) {
	n := 0
	for sig := range sigs {
		n++
		log := s.log.Load()
		switch n {
		case 1:
			log.Info("stop signal: finishing the running commands, then stopping; send it again to interrupt them", "signal", sig.String())
			close(s.drain)
		case 2:
			log.Warn("second stop signal: interrupting the running commands; a third exits at once", "signal", sig.String())
			s.cancel(errInterrupted)
		default:
			log.Error("third stop signal: exiting at once; the next start kills the commands left running", "signal", sig.String())
			s.exit(3)
		}
	}
}
