package scheduler

import (
	"strings"
	"testing"
)

// A force value of the wrong kind is refused in words a user reads (a
// number, a list), never a Go type (float64, []interface {}).
func TestForceErrorsInWords(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p    ForceParam
		v    any
		want string
	}{
		{ForceParam{Name: "s", Type: "string"}, []any{1.0}, "expected a string, got a list"},
		{ForceParam{Name: "n", Type: "int"}, []any{}, "expected an integer, got a list"},
		{ForceParam{Name: "b", Type: "bool"}, map[string]any{}, "expected a boolean, got an object"},
		{ForceParam{Name: "u", Type: "username"}, 1.0, "expected a string, got a number"},
		{ForceParam{Name: "m", Type: "multiple_choice", Choices: []string{"a"}}, []any{"a", 2.0}, "expected a list of strings, got a number in it"},
		{ForceParam{Name: "m", Type: "multiple_choice", Choices: []string{"a"}}, true, "expected a list of strings, got a boolean"},
		{ForceParam{Name: "w", Type: "worker_choice"}, 3.0, "expected a worker name, got a number"},
	}
	for _, tt := range tests {
		_, err := coerce(tt.p, tt.v, nil)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s %s = %v: error %v, want %q", tt.p.Type, tt.p.Name, tt.v, err, tt.want)
		}
		if err != nil && strings.ContainsAny(err.Error(), "[{") {
			t.Errorf("%s: a Go type in %q", tt.p.Type, err)
		}
	}
}
