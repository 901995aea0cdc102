package store

import (
	"path/filepath"
	"testing"

	"github.com/gbb-ci/gbb/internal/testpg"
)

// The store's behaviour is defined once, by the tests that run through
// eachBackend: each runs as TestX/bbolt and TestX/postgres, on a new store
// of each, so that `go test -run '/bbolt'` runs bbolt's half only. The
// tests that stay bbolt-only test bbolt's own machinery (its file lock,
// group commit, compaction, buckets and upgrades of older files), and say
// so.

// pg is this test binary's PostgreSQL, started by TestMain.
var pg *testpg.Server

func TestMain(m *testing.M) { testpg.Main(m, &pg) }

// backend is an implementation of Store that the shared tests run on.
type backend struct {
	name string
	// newLoc makes the location of a new, empty store: a bbolt file's
	// path, or a new PostgreSQL database's URL (dropped when t ends).
	newLoc func(t testing.TB) string
}

func backends() []backend {
	return []backend{
		{"bbolt", func(t testing.TB) string { return filepath.Join(t.TempDir(), "state.db") }},
		{"postgres", func(t testing.TB) string { return pg.NewDatabase(t) }},
	}
}

// eachBackend runs f on each backend, as parallel subtests named after
// them.
func eachBackend(t *testing.T, f func(t *testing.T, be backend)) {
	t.Helper()
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			f(t, be)
		})
	}
}

// onPostgres runs f as t's subtest "postgres" only, for what a bbolt store
// cannot do: several masters on one store.
func onPostgres(t *testing.T, f func(t *testing.T, be backend)) {
	t.Helper()
	for _, be := range backends() {
		if be.name == "postgres" {
			t.Run(be.name, func(t *testing.T) {
				t.Parallel()
				f(t, be)
			})
		}
	}
}

// open opens a new, empty store; cleanup checks and closes it.
func (be backend) open(t testing.TB) Store { return be.openWith(t, Options{}) }

// openWith is open with opts.
func (be backend) openWith(t testing.TB, opts Options) Store {
	t.Helper()
	return be.openAt(t, be.newLoc(t), opts)
}

// openAt opens the store at loc (from newLoc), as a master does after a
// restart; cleanup checks and closes it.
func (be backend) openAt(t testing.TB, loc string, opts Options) Store {
	t.Helper()
	s := be.openUnchecked(t, loc, opts)
	t.Cleanup(func() {
		if err := s.Check(); err != nil {
			t.Errorf("check: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s
}

// openUnchecked opens the store at loc for a test that closes it itself,
// to open it again.
func (be backend) openUnchecked(t testing.TB, loc string, opts Options) Store {
	t.Helper()
	s, err := OpenURL(loc, "", opts)
	if err != nil {
		t.Fatalf("open %s store: %v", be.name, err)
	}
	return s
}

// reopen checks and closes s, then opens its location again (openAt).
func (be backend) reopen(t testing.TB, s Store, loc string, opts Options) Store {
	t.Helper()
	ok(t, s.Check())
	ok(t, s.Close())
	return be.openAt(t, loc, opts)
}
