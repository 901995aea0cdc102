package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// TestForceParamKinds: fixed, username, multiple_choice and worker_choice
// params, as buildbot's FixedParameter, UserNameParameter,
// ChoiceStringParameter(multiple=True) and WorkerChoiceParameter.
func TestForceParamKinds(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	b1, _ := db.EnsureBuilder("b1")
	b2, _ := db.EnsureBuilder("b2")
	for name, on := range map[string][]int64{"w1": {b1.ID, b2.ID}, "w2": {b1.ID}, "w3": nil} {
		w, err := db.EnsureWorker(name)
		if err != nil {
			t.Fatal(err)
		}
		var bms []store.BuilderMaster
		for _, id := range on {
			bms = append(bms, store.BuilderMaster{BuilderID: id, MasterID: 1})
		}
		if err := db.SetWorkerConfiguredOn(w.ID, bms); err != nil {
			t.Fatal(err)
		}
	}
	sc := config.Scheduler{Type: "force", Name: "f", BuilderNames: []string{"b1", "b2"},
		Params: []config.ForceParam{
			{Name: "release", Type: "fixed", Default: "yes"},
			{Name: "username", Label: "Who:", Type: "username", NeedEmail: true},
			{Name: "suites", Type: "multiple_choice", Choices: []string{"unit", "race", "e2e"}, Default: []string{"unit"}},
			{Name: "workername", Type: "worker_choice"},
		}}
	s := New([]config.Scheduler{sc}, db, nil, nil)
	infos := s.ForceSchedulers()
	if got, want := infos[0].Params[3].Choices, []string{"-any-", "w1", "w2"}; !cmp.Equal(got, want) {
		t.Errorf("worker choices %q, want %q", got, want)
	}

	const me = "Jo <jo@example.org>"
	tests := []struct {
		name    string
		req     ForceRequest
		want    map[string]any // the Force Build Form properties, reason aside
		field   string         // of the ParamError, when refused
		builder string         // only that builder
	}{
		{name: "defaults", req: ForceRequest{Owner: me},
			want: map[string]any{"release": "yes", "suites": []any{"unit"}, "owner": me}},
		{name: "values", req: ForceRequest{Owner: me, BuilderNames: []string{"b1"}, Properties: map[string]any{"release": "yes", "suites": []any{"race", "e2e"}, "workername": "w2"}},
			want: map[string]any{"release": "yes", "suites": []any{"race", "e2e"}, "workername": "w2", "owner": me}},
		{name: "form values", req: ForceRequest{Owner: me, Properties: map[string]any{"suites": []string{"e2e"}, "workername": "-any-"}},
			want: map[string]any{"release": "yes", "suites": []any{"e2e"}, "owner": me}},
		{name: "no suites", req: ForceRequest{Owner: me, Properties: map[string]any{"suites": []any{}}},
			want: map[string]any{"release": "yes", "suites": []any{}, "owner": me}},
		{name: "logged in: not checked", req: ForceRequest{Owner: "jo", OwnerFromLogin: true},
			want: map[string]any{"release": "yes", "suites": []any{"unit"}, "owner": "jo"}},
		{name: "anonymous", req: ForceRequest{}, want: map[string]any{"release": "yes", "suites": []any{"unit"}}},
		{name: "fixed changed", req: ForceRequest{Owner: me, Properties: map[string]any{"release": "no"}}, field: "release"},
		{name: "no email", req: ForceRequest{Owner: "jo"}, field: "username"},
		{name: "not a suite", req: ForceRequest{Owner: me, Properties: map[string]any{"suites": []any{"unit", "fuzz"}}}, field: "suites"},
		{name: "suites not a list", req: ForceRequest{Owner: me, Properties: map[string]any{"suites": 3.0}}, field: "suites"},
		{name: "worker of not every builder", req: ForceRequest{Owner: me, Properties: map[string]any{"workername": "w2"}}, field: "workername"},
		{name: "unknown worker", req: ForceRequest{Owner: me, BuilderNames: []string{"b1"}, Properties: map[string]any{"workername": "w3"}}, field: "workername"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bsid, _, err := s.Force(context.Background(), "f", tc.req)
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
		})
	}
}
