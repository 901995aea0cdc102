package master

import (
	"fmt"

	"github.com/gbb-ci/gbb/pkg/build"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/secrets"
)

// secretsChain makes the [[secrets_providers]], asked in config order; nil
// when there are none.
func secretsChain(providers []config.SecretsProvider) (build.Secrets, error) {
	var chain secrets.Chain
	for _, p := range providers {
		switch p.Type {
		case "file":
			f, err := secrets.NewFile(p.Dirname)
			if err != nil {
				return nil, fmt.Errorf("secrets provider at line %d: %w", p.Line, err)
			}
			chain = append(chain, f)
		case "env":
			chain = append(chain, secrets.Env{Prefix: p.Prefix})
		}
	}
	if len(chain) == 0 {
		return nil, nil
	}
	return chain, nil
}

// secretGetter is s's Get, or nil when there are no secrets providers.
func secretGetter(s build.Secrets) func(string) (string, error) {
	if s == nil {
		return nil
	}
	return s.Get
}
