package api

import (
	"errors"
	"net/url"
	"testing"
)

// queryResources are the resources FuzzQuery picks from.
var queryResources = []*resource{
	builderRes, buildRes, stepRes, logRes, logchunkRes, workerRes, buildrequestRes,
	buildsetRes, sourcestampRes, forceschedulerRes, masterRes, changeRes, schedulerRes,
}

// queryObjects are objects of every JSON type a field may hold, for apply.
var queryObjects = []map[string]any{
	{"buildid": int64(1), "complete": true, "name": "a", "tags": []any{"x", "y"}, "properties": map[string]any{"p": []any{1, "s"}}},
	{"buildid": int64(2), "complete": false, "name": nil, "tags": []any{}, "results": nil},
	{"buildid": 3.0, "complete": nil, "name": "b", "state_string": "running", "number": int64(-1)},
	{},
}

// FuzzQuery: any query string is parsed into a query or refused with a
// queryError (a 400), and a parsed one applies to any objects; never a
// panic.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		"", "field=buildid,number&order=-number&limit=10&offset=5",
		"complete=true&results__ne=0&builderid__in=1&builderid__in=2",
		"state_string__contains=fail&number__lt=5&number__ge=null",
		"tags__contains=x&property=*&property=owner", "limit=-1", "order=properties",
		"name__eq=a&name__eq=b&name__ne=c&name__ne=d", "a__b__c=1", "__=1", "%zz=1",
		"complete=yes&complete=no", "buildid__gt=9223372036854775808",
	} {
		for i := range queryResources {
			f.Add(s, uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, raw string, which uint8) {
		res := queryResources[int(which)%len(queryResources)]
		v, err := url.ParseQuery(raw)
		if err != nil {
			return // the router refuses these before parseQuery
		}
		q, err := parseQuery(v, res)
		if err != nil {
			if _, ok := errors.AsType[*queryError](err); !ok {
				t.Fatalf("parseQuery(%q) error %T %v, want a *queryError", raw, err, err)
			}
			return
		}
		objs := make([]map[string]any, len(queryObjects))
		copy(objs, queryObjects)
		out, total := q.apply(objs)
		if total > len(objs) || len(out) > total {
			t.Fatalf("apply of %q: %d out of %d matched, %d objects", raw, len(out), total, len(objs))
		}
		for _, o := range out {
			q.project(o)
		}
	})
}
