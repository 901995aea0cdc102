package hooks

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/internal/testpg"
	"github.com/gbb-ci/gbb/internal/teststore"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestHookWhenTimestamp: the base dialect's when_timestamp, on both
// stores. What is not a time of 1970 to 9999 in Unix seconds (NaN, which
// was taken as "now", infinities, a number too large, which the store
// refused naming the int64 minimum) is a 400 that names the field and the
// value, and nothing is stored; the times in range are stored as given.
func TestHookWhenTimestamp(t *testing.T) {
	t.Parallel()
	stores := map[string]func(t *testing.T) store.Store{
		"bbolt": func(t *testing.T) store.Store { return teststore.Open(t) },
		"postgres": func(t *testing.T) store.Store {
			srv, err := testpg.Start()
			if err != nil {
				t.Fatalf("PostgreSQL: %v", err)
			}
			t.Cleanup(func() { srv.Stop() })
			return teststore.OpenURL(t, srv.NewDatabase(t), store.Options{})
		},
	}
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	js := map[string]string{"Content-Type": "application/json"}
	notSeconds := func(v string) string { return fmt.Sprintf("when_timestamp must be unix seconds, not %q", v) }
	after := func(v string) string { return fmt.Sprintf("when_timestamp %q is after the year 9999", v) }
	refused := []struct {
		hdr        map[string]string
		body, want string
	}{
		{form, "author=a&when_timestamp=nan", notSeconds("nan")},
		{form, "author=a&when_timestamp=NaN", notSeconds("NaN")},
		{form, "author=a&when=-nan", notSeconds("-nan")},
		{form, "author=a&when_timestamp=inf", notSeconds("inf")},
		{form, "author=a&when_timestamp=-Infinity", notSeconds("-Infinity")},
		{form, "author=a&when_timestamp=-1", notSeconds("-1")},
		{form, "author=a&when_timestamp=-1e400", notSeconds("-1e400")},
		{form, "author=a&when_timestamp=soon", notSeconds("soon")},
		{form, "author=a&when_timestamp=1e300", after("1e300")},
		{form, "author=a&when_timestamp=1e400", after("1e400")},
		{form, "author=a&when_timestamp=9223372036854775808", after("9223372036854775808")},
		{form, "author=a&when_timestamp=253402300800", after("253402300800")},
		{js, `{"author": "a", "when_timestamp": 1e300}`, after("1e300")},
		{js, `[{"author": "a"}, {"author": "b", "when_timestamp": 1E19}]`, "change 2: " + after("1E19")},
	}
	stored := []struct {
		body string
		want time.Time
	}{
		{"author=a&when_timestamp=1700000000.9", time.Unix(1700000000, 0)},
		{"author=a&when_timestamp=253402300799", time.Date(9999, time.December, 31, 23, 59, 59, 0, time.UTC)},
		{"author=a&when_timestamp=1e9", time.Unix(1e9, 0)},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			f := &fixture{srv: hookServerWith(st, testHooks)}
			t.Cleanup(f.srv.Close)
			for _, tt := range refused {
				status, reply := f.hookPost(t, "/change_hook/base", tt.hdr, []byte(tt.body))
				if got, _ := reply["error"].(string); status != 400 || got != tt.want {
					t.Errorf("%s: %d %q, want 400 %q", tt.body, status, got, tt.want)
				} else if strings.Contains(got, "-9223372036854775808") {
					t.Errorf("%s: %q", tt.body, got)
				}
			}
			if n := must(st.CountChanges(store.ChangeFilter{}))(t); n != 0 {
				t.Fatalf("%d changes stored from refused hooks", n)
			}
			for _, tt := range stored {
				status, reply := f.hookPost(t, "/change_hook/base", form, []byte(tt.body))
				ids, _ := reply["changeids"].([]any)
				if status != 200 || len(ids) != 1 {
					t.Errorf("%s: %d %v", tt.body, status, reply)
					continue
				}
				c := must(st.Change(int64(ids[0].(float64))))(t)
				if !c.When.Equal(tt.want) {
					t.Errorf("%s: stored when %v, want %v", tt.body, c.When, tt.want)
				}
			}
		})
	}
}
