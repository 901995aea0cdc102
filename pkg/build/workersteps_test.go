package build

import (
	"testing"

	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/store"
)

func TestDecodeRC(t *testing.T) {
	t.Parallel()
	m := map[int]string{0: "success", 1: "warnings", 2: "failure", 3: "skipped"}
	tests := []struct {
		name    string
		m       map[int]string
		res     protocol.Result
		results int
		want    int
	}{
		{"no map", nil, protocol.Result{ExitCode: 1}, store.Failure, store.Failure},
		{"0", m, protocol.Result{}, store.Success, store.Success},
		{"1 warnings", m, protocol.Result{ExitCode: 1}, store.Failure, store.Warnings},
		{"3 skipped", m, protocol.Result{ExitCode: 3}, store.Failure, store.Skipped},
		{"unnamed code fails", m, protocol.Result{ExitCode: 9}, store.Failure, store.Failure},
		{"0 not named", map[int]string{1: "success"}, protocol.Result{}, store.Success, store.Failure},
		{"killed", m, protocol.Result{ExitCode: -1, Signal: "KILL"}, store.Failure, store.Failure},
		{"timed out", m, protocol.Result{ExitCode: 0, TimedOut: true}, store.Failure, store.Failure},
		{"interrupted", m, protocol.Result{ExitCode: 1, Interrupted: true}, store.Cancelled, store.Cancelled},
		{"could not run", m, protocol.Result{ExitCode: -1, Err: "no such dir"}, store.Failure, store.Failure},
		{"worker lost", m, protocol.Result{}, store.Retry, store.Retry},
	}
	for _, tt := range tests {
		if got := decodeRC(tt.m, tt.res, tt.results); got != tt.want {
			t.Errorf("%s: decodeRC = %s, want %s", tt.name, ResultName(got), ResultName(tt.want))
		}
	}
}
