package logsample

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// TestKeyed: one key's lines do not use up another's budget, and the
// table forgets the least recently used key past its bound.
func TestKeyed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		k := NewKeyed(time.Second, 3, 4)
		if logged := sample(k.Sampler("flood"), 1000); logged != 3 {
			t.Errorf("%d of 1000 lines of one key logged, want 3", logged)
		}
		if logged := sample(k.Sampler("other"), 5); logged != 3 {
			t.Errorf("another key after the flood: %d of 5 lines logged, want 3", logged)
		}
		for i := range 100 {
			sample(k.Sampler(fmt.Sprint("k", i)), 1)
		}
		if n := k.Len(); n != 4 {
			t.Errorf("%d keys held, want at most 4", n)
		}
		if logged := sample(k.Sampler("flood"), 5); logged != 3 {
			t.Errorf("a forgotten key: %d of 5 lines logged, want a fresh budget of 3", logged)
		}
		k.Sampler("k99")
		if logged := sample(k.Sampler("flood"), 5); logged != 0 {
			t.Errorf("a key still held: %d more lines logged at once, want 0", logged)
		}
	})
}
