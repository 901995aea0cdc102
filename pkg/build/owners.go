package build

import (
	"encoding/json"
	"slices"

	"github.com/gbb-ci/gbb/pkg/store"
)

// owners is buildbot's "owners" build property (process/build.py
// setupBuild): the blamelist (the authors of the changes built) and the
// "owner" of the request (who forced it), sorted, each once; none when
// both are empty.
func (b *build) owners(bs store.Buildset) []string {
	var out []string
	for _, id := range bs.ChangeIDs {
		c, err := b.e.st.Change(id)
		if err != nil {
			b.log.Error("read change for the owners property", "change", id, "err", err)
			continue
		}
		if c.Author != "" {
			out = append(out, c.Author)
		}
	}
	if p, ok := bs.Properties["owner"]; ok {
		var owner string
		if json.Unmarshal(p.Value, &owner) == nil && owner != "" {
			out = append(out, owner)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
