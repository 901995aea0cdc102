package master

import "testing"

func TestDerivedMax(t *testing.T) {
	t.Parallel()
	tests := []struct {
		nofile              uint64
		share, lo, hi, want int
	}{
		{1024, webShare, webMin, webMax, 512},
		{1024, workerShare, workerMin, workerMax, 256},
		{1 << 20, webShare, webMin, webMax, webMax},
		{1 << 20, workerShare, workerMin, workerMax, workerMax},
		{64, webShare, webMin, webMax, webMin},
		{1024, bbShare, bbMin, bbMax, 64},
		{1 << 20, bbShare, bbMin, bbMax, bbMax},
	}
	for _, tc := range tests {
		if got := derivedMax(tc.nofile, tc.share, tc.lo, tc.hi); got != tc.want {
			t.Errorf("derivedMax(%d, %d, %d, %d) = %d, want %d", tc.nofile, tc.share, tc.lo, tc.hi, got, tc.want)
		}
	}
	if n := descriptorLimit(); n < 16 {
		t.Errorf("descriptorLimit() = %d, not a plausible RLIMIT_NOFILE", n)
	}
}

// TestDerivedMaxSum: with every port on and its max_connections derived,
// the caps add up to less than the descriptor limit (1024 is Debian's
// default soft limit, which Go raises to the hard one; 20,000 the probe's
// machine), leaving descriptors for the store, logs and pollers.
func TestDerivedMaxSum(t *testing.T) {
	t.Parallel()
	for _, nofile := range []uint64{1024, 4096, 20000, 65536, 1 << 20, descriptorLimit()} {
		sum := derivedMax(nofile, webShare, webMin, webMax) + derivedMax(nofile, workerShare, workerMin, workerMax) +
			2*derivedMax(nofile, bbShare, bbMin, bbMax)
		if uint64(sum) > nofile*7/8 {
			t.Errorf("RLIMIT_NOFILE %d: the derived caps of the web, worker, pb and msgpack ports add up to %d, over 7/8 of it", nofile, sum)
		}
	}
}
