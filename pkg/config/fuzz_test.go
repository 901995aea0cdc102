package config

import (
	"path/filepath"
	"testing"
)

// FuzzParse: any file is a Config or a list of errors, each naming the
// file; never a panic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		Sample, "", "title = 1", "[[workers]]\nname = 'w'\n", "a = [1, 'x']",
		transferHead + "[[builders.steps]]\ntype = 'shell'\ncommand = '%(prop:x:-y)s'\n",
		"log_max_size = '10MiB'\nlog_max_tail_size = 1.5\n[janitor]\nlog_horizon = '1h'\ninterval = 0\n",
		"[[locks]]\nname = 'l'\ntype = 'master'\nmax_count = -1\n",
		"[www.change_hook.github]\nsecret = 1\n", "x = 1979-05-27T07:32:00Z\n[x]\n",
		"\"\\u0000\" = \"\\ud800\"\n", "[[schedulers]]\ntype = 'nightly'\nhour = [25]\n",
		"include = ['x/*.toml', 3]\n[factories.f]\n[[factories.f.steps]]\ntype = 'shell'\ncommand = '%(kw:a)s'\n" +
			"[[builders]]\nname = 'b-%(kw:a)s'\nfactory = 'f'\nmatrix = { a = ['1', '2'], workers = { a.1 = ['w'] } }\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz/master.toml", data)
		if err == nil {
			if cfg == nil {
				t.Fatal("nil Config without an error")
			}
			return
		}
		if cfg != nil {
			t.Fatal("a Config with an error")
		}
		errs := Errors(err)
		if len(errs) == 0 {
			t.Fatalf("error without an *Error: %v", err)
		}
		for _, e := range errs {
			// An include may name a file anywhere: its errors name it.
			if e.File != "fuzz/master.toml" && !filepath.IsAbs(e.File) || e.Msg == "" {
				t.Fatalf("error %+v does not name the file or say what is wrong", e)
			}
		}
	})
}
