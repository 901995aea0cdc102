package teststore

import (
	"path/filepath"
	"testing"

	"github.com/gbb-ci/gbb/internal/testpg"
	"github.com/gbb-ci/gbb/pkg/store"
)

var pg *testpg.Server

func TestMain(m *testing.M) { testpg.Main(m, &pg) }

// TestOpenURL opens a bbolt and a PostgreSQL store by URL; what one open
// wrote, the next open of the same URL reads.
func TestOpenURL(t *testing.T) {
	t.Parallel()
	for name, url := range map[string]string{
		"bbolt":    "bbolt:" + filepath.Join(t.TempDir(), "state.db"),
		"postgres": pg.NewDatabase(t),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			t.Run("write", func(t *testing.T) {
				s := OpenURL(t, url, store.Options{})
				if _, err := s.EnsureBuilder("b"); err != nil {
					t.Fatal(err)
				}
			})
			s := OpenURL(t, url, store.Options{})
			if _, err := s.BuilderByName("b"); err != nil {
				t.Errorf("after a reopen: %v", err)
			}
		})
	}
}
