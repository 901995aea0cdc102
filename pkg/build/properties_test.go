package build

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/protocol"
	"github.com/gbb-ci/gbb/pkg/scheduler"
	"github.com/gbb-ci/gbb/pkg/store"
	"github.com/google/go-cmp/cmp"
)

// TestRedaction: a secret a command prints across output chunks, in a
// state string or in a property is stored as <NAME>.
func TestRedaction(t *testing.T) {
	t.Parallel()
	db, id := openLog(t)
	r := &redactor{}
	r.add("token", "hunter2")
	r.add("key", "line one\nline two")
	st := redactingStore{Store: db, r: r}
	w := newLogWriter(st, id, logOptions{Flush: time.Hour}, nil)
	for _, o := range []protocol.Output{
		{Stream: protocol.Stdout, Data: []byte("pass=hun")},
		{Stream: protocol.Stdout, Data: []byte("ter2 ok\nline t")},
		{Stream: protocol.Stderr, Data: []byte("hunter2hunter2\n")},
		{Stream: protocol.Stdout, Data: []byte("wo\n")},
	} {
		w.output(o)
	}
	w.close()
	got, err := db.LogLines(id, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if want := "opass=<token> ok\ne<token><token>\no<key>\n"; got != want {
		t.Errorf("log:\n%q\nwant:\n%q", got, want)
	}

	l, _ := db.Log(id)
	step, _ := db.Step(l.StepID)
	if err := st.SetStepStateString(step.ID, "'echo hunter2'"); err != nil {
		t.Fatal(err)
	}
	p, _ := scheduler.NewProperty(map[string]any{"a": []any{"x hunter2 y", 3}}, "test")
	if err := st.SetBuildProperty(step.BuildID, "p", p); err != nil {
		t.Fatal(err)
	}
	step, _ = db.Step(step.ID)
	bld, _ := db.Build(step.BuildID)
	if step.StateString != "'echo <token>'" {
		t.Errorf("state string %q", step.StateString)
	}
	if got := string(bld.Properties["p"].Value); got != `{"a":["x \u003ctoken\u003e y",3]}` {
		t.Errorf("property %s", got)
	}
	if diff := cmp.Diff([]string{"token"}, bld.Properties["p"].Secrets); diff != "" {
		t.Errorf("the property's secrets (-want +got):\n%s", diff)
	}
}

func TestWarningCounter(t *testing.T) {
	t.Parallel()
	max := 1
	w := newWarningCounter(config.Step{
		WarningPattern: "(?i)warning:",
		Suppress:       []config.Suppression{{Regex: "deprecated"}, {File: "^vendor/", Regex: "."}},
		MaxWarnCount:   &max,
	})
	for _, o := range []protocol.Output{
		{Stream: protocol.Stdout, Data: []byte("a.c:1: warn")},
		{Stream: protocol.Stdout, Data: []byte("ing: x\r\nb.c:2: warning: deprecated y\n")},
		{Stream: protocol.Stderr, Data: []byte("vendor/z.c:3: warning: z\nc.c:4: Warning: last")},
		{Stream: protocol.Header, Data: []byte("warning: header lines are not counted\n")},
	} {
		w.output(o)
	}
	if diff := cmp.Diff([]string{"a.c:1: warning: x", "c.c:4: Warning: last"}, w.end()); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if w := newWarningCounter(config.Step{}); w != nil {
		t.Error("a step without warning_pattern counts warnings")
	}
}

func TestComputeResultWarnings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		step config.Step
		want int
	}{
		{config.Step{}, store.Warnings},
		{config.Step{QuietWarnings: true}, store.Success},
		{config.Step{FlunkOnWarnings: true}, store.Failure},
	} {
		if got, _ := computeResult(tc.step, store.Success, store.Warnings); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.step, ResultName(got), ResultName(tc.want))
		}
	}
}

func TestPropertyValue(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]any{
		`3`: int64(3), `1.5`: 1.5, `"s"`: "s", `[1, "a"]`: []any{int64(1), "a"}, `null`: nil,
	} {
		got := propertyValue(store.Property{Value: json.RawMessage(raw)})
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", raw, diff)
		}
	}
}
