package hooks

import (
	"context"
	"encoding/json"

	"github.com/gbb-ci/gbb/pkg/store"
)

// StoreSink is the [Sink] over the store: it stores the changes, with a
// hook's state in the same transaction, and then offers the changes
// stored to Then (the master's schedulers), as the pollers do.
type StoreSink struct {
	DB store.Store
	// Then gets the changes once stored; nil means nobody is told.
	Then func([]store.Change)
}

// AddChanges stores changes and offers them to Then.
func (s StoreSink) AddChanges(_ context.Context, changes []store.Change) ([]store.Change, error) {
	stored, err := s.DB.AddChanges(changes)
	if err != nil {
		return nil, err
	}
	s.then(stored)
	return stored, nil
}

// AddChangesAndState stores changes and a change hook's state in one
// transaction, then offers the changes to Then.
func (s StoreSink) AddChangesAndState(_ context.Context, changes []store.Change, objectName, key string, value json.RawMessage) ([]store.Change, error) {
	stored, err := s.DB.AddChangesAndState(changes, objectName, key, value)
	if err != nil {
		return nil, err
	}
	s.then(stored)
	return stored, nil
}

// GetState returns the state key of objectName, and whether it is set.
func (s StoreSink) GetState(objectName, key string) (json.RawMessage, bool, error) {
	return s.DB.GetState(objectName, key)
}

func (s StoreSink) then(stored []store.Change) {
	if s.Then != nil {
		s.Then(stored)
	}
}
