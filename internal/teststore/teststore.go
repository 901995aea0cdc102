package teststore

import (
	"path/filepath"
	"testing"

	"github.com/gbb-ci/gbb/pkg/store"
)

// Open opens a new store in t's temporary directory; when t ends, the
// store's consistency is checked (an error fails t) and it is closed.
func Open(t testing.TB) *store.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Check(); err != nil {
			t.Errorf("store check: %v", err)
		}
		db.Close()
	})
	return db
}

// OpenURL opens the store url names, as the master does ([store.OpenURL]:
// "bbolt:PATH", or a PostgreSQL URL such as one of testpg's databases);
// when t ends, the store's consistency is checked (an error fails t) and
// it is closed.
func OpenURL(t testing.TB, url string, opts store.Options) store.Store {
	t.Helper()
	s, err := store.OpenURL(url, t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil {
			t.Errorf("store check: %v", err)
		}
		s.Close()
	})
	return s
}
