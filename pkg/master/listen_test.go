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
