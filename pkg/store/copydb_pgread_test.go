package store

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// newCopyDatabase is an empty database of the test binary's PostgreSQL,
// dropped when t ends.
func newCopyDatabase(t *testing.T) string {
	t.Helper()
	return pg.NewDatabase(t)
}

// TestCopyDBReadOnPostgres: the PostgreSQL copy of a bbolt store reads,
// through the PostgreSQL store's own methods, as the source does through
// bbolt's; it passes its check; new ids continue after the source's.
func TestCopyDBReadOnPostgres(t *testing.T) {
	t.Parallel()
	srcPath := filepath.Join(t.TempDir(), "src.db")
	src, err := Open(srcPath, Options{})
	ok(t, err)
	fillForCopy(t, src)
	want := snapshot(t, src)
	seqs := boltSeqs(t, src)
	ok(t, src.Close())
	pgURL := newCopyDatabase(t)
	copyOK(t, srcPath, pgURL)
	p, err := OpenPG(pgURL, Options{})
	ok(t, err)
	defer p.Close()
	ok(t, p.Check())
	if diff := cmp.Diff(want, snapshot(t, p)); diff != "" {
		t.Errorf("bbolt → PostgreSQL read by PostgreSQL's methods (-source +copy):\n%s", diff)
	}
	checkIDsContinue(t, p, seqs)
}
