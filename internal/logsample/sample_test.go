package logsample

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// sample offers s n lines at once and returns how many it let through.
func sample(s *Sampler, n int) int {
	logged := 0
	for range n {
		if ok, _ := s.Sample(); ok {
			logged++
		}
	}
	return logged
}

func TestSample(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := New(time.Second, 3)
		if logged := sample(s, 1000); logged != 3 {
			t.Errorf("%d of 1000 lines at once logged, want 3", logged)
		}
		time.Sleep(time.Second)
		ok, dropped := s.Sample()
		if !ok || dropped != 997 {
			t.Errorf("a second later: ok %v, dropped %d, want true and 997", ok, dropped)
		}
		if ok, _ := s.Sample(); ok {
			t.Error("a line right after was logged too")
		}
	})
}

// TestLogCountsSuppressed: Log writes the lines let through, and the first
// one after a gap says how many were held back.
func TestLogCountsSuppressed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		log := slog.New(slog.NewTextHandler(&logs, nil))
		s := New(time.Hour, 1)
		if !s.Log(log, slog.LevelWarn, "first") {
			t.Fatal("the first line was not written")
		}
		for range 9 {
			if s.Log(log, slog.LevelWarn, "again") {
				t.Fatal("a line past the burst was written")
			}
		}
		time.Sleep(time.Hour)
		if !s.Log(log, slog.LevelWarn, "later", "k", "v") {
			t.Fatal("the line after the interval was not written")
		}
		out := logs.String()
		if strings.Contains(out, "again") || !strings.Contains(out, "msg=first\n") {
			t.Errorf("lines past the burst were written, or the first was not:\n%s", out)
		}
		if !strings.Contains(out, "msg=later k=v suppressed=9") {
			t.Errorf("the next line does not count the suppressed ones:\n%s", out)
		}
	})
}

// Zero settings are the defaults, not a sampler that never lets a line
// through.
func TestDefaults(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := New(0, 0)
		if logged := sample(s, 100); logged != 5 {
			t.Errorf("%d of 100 lines at once logged, want the default burst of 5", logged)
		}
		time.Sleep(10 * time.Second)
		if ok, dropped := s.Sample(); !ok || dropped != 95 {
			t.Errorf("10s later: ok %v, dropped %d, want true and 95", ok, dropped)
		}
	})
}
