package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// DefaultJanitorInterval is how often the janitor runs when [janitor] sets
// no interval.
const DefaultJanitorInterval = 24 * time.Hour

// Janitor is [janitor]: what the master deletes as it grows old, as
// buildbot's JanitorConfigurator. With neither horizon set (the default)
// nothing is ever deleted.
type Janitor struct {
	// LogHorizon is log_horizon: the log contents of builds that ended
	// longer ago are deleted (the logs stay listed, with type "d" and no
	// lines); zero (the default) keeps them forever.
	LogHorizon Duration
	// BuildHorizon is build_horizon: builds that ended longer ago are
	// deleted with their steps, logs and properties, and so are their
	// finished build requests and buildsets once no build refers to them;
	// the newest build of each builder is always kept, so that build
	// numbers go on. Zero (the default) keeps them forever.
	BuildHorizon Duration
	// Interval is interval: how often the janitor runs, once at start and
	// then at this interval; zero (when unset) means DefaultJanitorInterval
	// (24h). Set to zero in the file, it is an error.
	Interval Duration
}

// retention reads the top-level log_max_size and log_max_tail_size, and
// [janitor], into c.
func (d *decoder) retention(t *table, c *Config) {
	c.LogMaxSize, _ = t.size("log_max_size")
	c.LogMaxTailSize, _ = t.size("log_max_tail_size")
	if c.LogMaxTailSize > 0 && c.LogMaxSize == 0 && t.has("log_max_tail_size") {
		t.errorf("log_max_tail_size", "needs log_max_size: the tail is what is kept after the first log_max_size bytes")
	}
	j, ok := t.sub("janitor")
	if !ok {
		return
	}
	c.Janitor.LogHorizon, _ = j.duration("log_horizon")
	c.Janitor.BuildHorizon, _ = j.duration("build_horizon")
	if iv, ok := j.duration("interval"); ok {
		if iv.Duration == 0 {
			j.errorf("interval", "must be positive")
		} else {
			c.Janitor.Interval = iv
		}
	}
	j.done()
}

// size returns the byte size name: an integer number of bytes, or a string
// such as "10MiB", "1MB" or "512 KiB" (units B, kB, MB, GB, TB in powers of
// 1000, KiB, MiB, GiB, TiB in powers of 1024, case ignored), reporting a
// negative or malformed one.
func (t *table) size(name string) (int64, bool) {
	v, ok := t.get(name)
	if !ok {
		return 0, false
	}
	n, err := parseSize(v)
	if err != nil {
		t.errorf(name, "%v", err)
		return 0, false
	}
	return n, true
}

// sizeUnits are the units parseSize knows, lower case.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1000, "kb": 1000, "mb": 1000 * 1000, "gb": 1000 * 1000 * 1000, "tb": 1000 * 1000 * 1000 * 1000,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

func parseSize(v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		if v < 0 {
			return 0, fmt.Errorf("must not be negative")
		}
		return v, nil
	case string:
		s := strings.TrimSpace(v)
		i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		if i < 0 {
			i = len(s)
		}
		num, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
		mult, ok := sizeUnits[unit]
		if num == "" || !ok {
			return 0, fmt.Errorf(`invalid size %q (want bytes, or e.g. "10MiB", "1MB", "512KiB")`, v)
		}
		if n, err := strconv.ParseInt(num, 10, 64); err == nil {
			if n > math.MaxInt64/mult {
				return 0, fmt.Errorf("size %q is out of range", v)
			}
			return n * mult, nil
		}
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || f*float64(mult) >= math.MaxInt64 {
			return 0, fmt.Errorf(`invalid size %q (want bytes, or e.g. "10MiB", "1MB", "512KiB")`, v)
		}
		return int64(f * float64(mult)), nil
	}
	return 0, fmt.Errorf(`expected a size (an integer number of bytes or a string such as "10MiB"), got %s`, typeName(v))
}
