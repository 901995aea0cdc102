package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
)

func TestForceParams(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	db.EnsureBuilder("b")
	sc := config.Scheduler{Type: "force", Name: "f", BuilderNames: []string{"b"}, Reason: "nightly by hand", Label: "Force!",
		Params: []config.ForceParam{
			{Name: "target", Type: "string", Default: "all", Regex: "^[a-z]+$"},
			{Name: "jobs", Type: "int", Default: int64(2)},
			{Name: "debug", Type: "bool", Default: false},
			{Name: "flavour", Type: "choice", Default: "release", Choices: []string{"release", "debug"}},
			{Name: "ticket", Type: "text", Required: true, Label: "Ticket"},
		}}
	s := New([]config.Scheduler{sc}, db, nil, nil)
	if diff := cmp.Diff([]ForceInfo{{
		Name: "f", Label: "Force!", ButtonName: "f", BuilderNames: []string{"b"}, Reason: "nightly by hand",
		Params: []ForceParam{
			{Name: "target", Label: "target", Type: "string", Default: "all", Regex: "^[a-z]+$"},
			{Name: "jobs", Label: "jobs", Type: "int", Default: int64(2)},
			{Name: "debug", Label: "debug", Type: "bool", Default: false},
			{Name: "flavour", Label: "flavour", Type: "choice", Default: "release", Choices: []string{"release", "debug"}},
			{Name: "ticket", Label: "Ticket", Type: "text", Required: true},
		},
	}}, s.ForceSchedulers()); diff != "" {
		t.Errorf("ForceSchedulers (-want +got):\n%s", diff)
	}

	defaults := map[string]any{"target": "all", "jobs": 2.0, "debug": false, "flavour": "release", "ticket": "T-1"}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range defaults {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name  string
		props map[string]any
		want  map[string]any // properties set from the form
		field string         // of the ParamError, when refused
	}{
		{name: "defaults", props: map[string]any{"ticket": "T-1"}, want: defaults},
		{name: "form strings", props: map[string]any{"ticket": "T-1", "jobs": "3", "debug": "on", "flavour": "debug", "target": "docs"},
			want: with("jobs", 3.0, "debug", true, "flavour", "debug", "target", "docs")},
		{name: "JSON types", props: map[string]any{"ticket": "T-1", "jobs": 4.0, "debug": true}, want: with("jobs", 4.0, "debug", true)},
		{name: "bool 1", props: map[string]any{"ticket": "T-1", "debug": "1"}, want: with("debug", true)},
		{name: "empty int takes the default", props: map[string]any{"ticket": "T-1", "jobs": ""}, want: defaults},
		{name: "required missing", props: map[string]any{}, field: "ticket"},
		{name: "required empty", props: map[string]any{"ticket": ""}, field: "ticket"},
		{name: "not an int", props: map[string]any{"ticket": "T-1", "jobs": "three"}, field: "jobs"},
		{name: "fractional int", props: map[string]any{"ticket": "T-1", "jobs": 2.5}, field: "jobs"},
		{name: "not a bool", props: map[string]any{"ticket": "T-1", "debug": "maybe"}, field: "debug"},
		{name: "not a choice", props: map[string]any{"ticket": "T-1", "flavour": "fast"}, field: "flavour"},
		{name: "regex mismatch", props: map[string]any{"ticket": "T-1", "target": "Docs!"}, field: "target"},
		{name: "undeclared", props: map[string]any{"ticket": "T-1", "other": "x"}, field: "other"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bsid, _, err := s.Force(context.Background(), "f", ForceRequest{Properties: tc.props})
			if tc.field != "" {
				var pe *ParamError
				if !errors.As(err, &pe) || pe.Field != tc.field {
					t.Errorf("Force: %v, want a ParamError on %s", err, tc.field)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			bs, _ := db.Buildset(bsid)
			got := map[string]any{}
			for k, p := range bs.Properties {
				if p.Source != "Force Build Form" || k == "reason" {
					continue
				}
				var v any
				json.Unmarshal(p.Value, &v)
				got[k] = v
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("properties (-want +got):\n%s", diff)
			}
			if string(bs.Properties["reason"].Value) != `"nightly by hand"` {
				t.Errorf("reason %s, want the scheduler's default", bs.Properties["reason"].Value)
			}
		})
	}
}
