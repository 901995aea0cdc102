package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRetention(t *testing.T) {
	t.Parallel()
	type got struct {
		Max, Tail                       int64
		LogHorizon, BuildHorizon, Every time.Duration
	}
	tests := []struct {
		name, src string
		want      got
	}{
		{"defaults", ``, got{}},
		{"bytes and horizons", `
log_max_size = 1048576
log_max_tail_size = 32768
[janitor]
log_horizon = "720h"
build_horizon = 7776000
interval = "1h"
`, got{1 << 20, 32768, 720 * time.Hour, 90 * 24 * time.Hour, time.Hour}},
		{"units", `
log_max_size = "10MiB"
log_max_tail_size = "1.5 kB"
`, got{10 << 20, 1500, 0, 0, 0}},
		{"si and lower case", `
log_max_size = "1MB"
log_max_tail_size = "64kib"
`, got{1000000, 64 << 10, 0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := mustParse(t, "master.toml", tc.src)
			g := got{cfg.LogMaxSize, cfg.LogMaxTailSize, cfg.Janitor.LogHorizon.Duration, cfg.Janitor.BuildHorizon.Duration, cfg.Janitor.Interval.Duration}
			if diff := cmp.Diff(tc.want, g); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRetentionErrors(t *testing.T) {
	t.Parallel()
	src := `title = "x"
log_max_size = "10 parsecs"
log_max_tail_size = -1
[janitor]
log_horizon = "forever"
build_horizon = "-1h"
interval = "0s"
keep = true
`
	_, err := Parse("master.toml", []byte(src))
	var msgs []string
	for _, e := range Errors(err) {
		msgs = append(msgs, e.Error())
	}
	want := []string{
		`master.toml:2: log_max_size: invalid size "10 parsecs" (want bytes, or e.g. "10MiB", "1MB", "512KiB")`,
		`master.toml:3: log_max_tail_size: must not be negative`,
		`master.toml:5: janitor.log_horizon: invalid duration "forever" (want e.g. "300s", "5m", "1h30m" or an integer number of seconds)`,
		`master.toml:6: janitor.build_horizon: must not be negative`,
		`master.toml:7: janitor.interval: must be positive`,
		`master.toml:8: janitor.keep: unknown key`,
	}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}

	_, err = Parse("master.toml", []byte(`log_max_tail_size = "1MiB"`))
	if err == nil || !strings.Contains(err.Error(), "log_max_tail_size: needs log_max_size") {
		t.Errorf("a tail without a head: %v", err)
	}
}
