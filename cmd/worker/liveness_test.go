package main

import (
	"strings"
	"testing"
)

// TestKeepaliveFlags: the direct form refuses a negative -keepalive or
// -keepalive-timeout, and one that is not a duration, before dialing.
func TestKeepaliveFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		flag, value string
		code        int
		stderr      string
	}{
		{"-keepalive", "-1s", 1, "-keepalive and -keepalive-timeout must not be negative"},
		{"-keepalive-timeout", "-5s", 1, "-keepalive and -keepalive-timeout must not be negative"},
		{"-keepalive", "soon", 2, `invalid value "soon" for flag -keepalive`},
	}
	for _, tt := range tests {
		t.Run(tt.flag+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			code, _, stderr := gbbWorker(t, "-master", "127.0.0.1:1", "-name", "w", "-password", "p",
				"-basedir", t.TempDir(), tt.flag, tt.value)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, want %d with %q; stderr:\n%s", code, tt.code, tt.stderr, stderr)
			}
		})
	}
}
