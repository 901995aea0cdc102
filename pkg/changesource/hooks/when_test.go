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
// Only the decimal numbers Python's float() reads pass: a hexadecimal
// float, which Go's ParseFloat reads, is refused. The error names the field
// the request used (buildbot's older "when" too), and so does a JSON string
// that is not a number.
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
	whenNot := func(v string) string { return fmt.Sprintf("when must be unix seconds, not %q", v) }
	refused := []struct {
		hdr        map[string]string
		body, want string
	}{
		{form, "author=a&when_timestamp=nan", notSeconds("nan")},
		{form, "author=a&when_timestamp=NaN", notSeconds("NaN")},
		{form, "author=a&when=-nan", whenNot("-nan")},
		{form, "author=a&when=-1", whenNot("-1")},
		{form, "author=a&when=1e400", "when \"1e400\" is after the year 9999"},
		{form, "author=a&when_timestamp=0x1p4", notSeconds("0x1p4")},
		{form, "author=a&when=0x1p4", whenNot("0x1p4")},
		{form, "author=a&when_timestamp=0x10", notSeconds("0x10")},
		{form, "author=a&when_timestamp=0X1.8P3", notSeconds("0X1.8P3")},
		{form, "author=a&when_timestamp=1__0", notSeconds("1__0")},
		{form, "author=a&when_timestamp=1_", notSeconds("1_")},
		{form, "author=a&when_timestamp=_1", notSeconds("_1")},
		{form, "author=a&when_timestamp=1_.5", notSeconds("1_.5")},
		{form, "author=a&when_timestamp=1e", notSeconds("1e")},
		{form, "author=a&when_timestamp=.", notSeconds(".")},
		{js, `{"author": "a", "when_timestamp": "0x1p4"}`, notSeconds("0x1p4")},
		{js, `{"author": "a", "when_timestamp": "soon"}`, notSeconds("soon")},
		{js, `{"author": "a", "when_timestamp": "-1"}`, notSeconds("-1")},
		{js, `{"author": "a", "when_timestamp": true}`, "malformed JSON: when_timestamp must be unix seconds, not true"},
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
		hdr  map[string]string
		body string
		want time.Time
	}{
		{js, `{"author": "a", "when_timestamp": "1700000002.5"}`, time.Unix(1700000002, 0)},
		{js, `{"author": "a", "when_timestamp": 1700000003}`, time.Unix(1700000003, 0)},
		{form, "author=a&when_timestamp=1700000000.9", time.Unix(1700000000, 0)},
		{form, "author=a&when_timestamp=253402300799", time.Date(9999, time.December, 31, 23, 59, 59, 0, time.UTC)},
		{form, "author=a&when_timestamp=1e9", time.Unix(1e9, 0)},
		{form, "author=a&when_timestamp=%2B1.7e9", time.Unix(1.7e9, 0)},
		{form, "author=a&when_timestamp=.5e10", time.Unix(5e9, 0)},
		{form, "author=a&when_timestamp=1700000000.", time.Unix(1700000000, 0)},
		{form, "author=a&when=1700000001", time.Unix(1700000001, 0)},
		{form, "author=a&when_timestamp=1_700_000_004.2_5", time.Unix(1700000004, 0)},
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
				status, reply := f.hookPost(t, "/change_hook/base", tt.hdr, []byte(tt.body))
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
