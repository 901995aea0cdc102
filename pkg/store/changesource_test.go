package store

import (
	"encoding/json"
	"testing"
)

// sourceOf reads what json.Unmarshal reads, whatever the other fields
// hold (quotes, backslashes, brackets in strings, nesting), or says it
// cannot.
func TestSourceOf(t *testing.T) {
	tricky := []string{``, `"`, `\`, `\\`, `\"`, `"}`, `{[`, `]}`, `a\"b\\"c`, "é\u2028", `,"Branch":"x"`}
	var vals [][]byte
	for i, s := range tricky {
		c := Change{ID: int64(i), Author: s, Comments: s + s, Files: []string{s, "f"}, Branch: s, Repository: s + "r", Project: "p" + s,
			Properties:      Properties{s: {Value: json.RawMessage(`{"a":["` + "]" + `",{"Branch":"no"}]}`), Source: s}},
			ParentChangeIDs: []int64{1, 2}}
		b, err := json.Marshal(c)
		ok(t, err)
		ind, err := json.MarshalIndent(c, " ", "\t")
		ok(t, err)
		vals = append(vals, b, ind)
	}
	vals = append(vals, []byte(`{}`), []byte(` { "Branch" : "b" , "X" : [ 1 , true , null , -2.5e3 ] } `), []byte(`{"Branch":1}`),
		[]byte(`{"Branch":"a"`), []byte(`[]`), []byte(`{"Branch":"a"}x`))
	for _, v := range vals {
		var want changeSource
		werr := json.Unmarshal(v, &want)
		got, gok := sourceOf(v)
		switch {
		case gok && werr != nil:
			t.Errorf("%s: read %+v, json says %v", v, got, werr)
		case gok && got != want:
			t.Errorf("%s: read %+v, json reads %+v", v, got, want)
		case !gok && werr == nil && len(v) > 0 && v[0] == '{':
			t.Errorf("%s: not read, json reads %+v", v, want)
		}
		k := itob(1)
		m, err := ChangeFilter{Branch: want.Branch, Project: want.Project}.matches(k, v)
		if werr == nil && (!m || err != nil) {
			t.Errorf("%s: no match of its own source %+v: %v", v, want, err)
		}
	}
}
