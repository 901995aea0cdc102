package config

import (
	"errors"
	"fmt"
)

// Error is one problem in a config file. Parse and Load return all the
// problems they find joined into one error; Errors returns them one by one.
type Error struct {
	File string // the file name given to Parse or Load
	Line int    // 1-based line of the key, or of its table; zero when unknown
	Key  string // the key, such as "builders[0].steps[1].command"; may be empty for a syntax error
	Msg  string
}

// Error formats e as "FILE:LINE: KEY: message", leaving out the line and the
// key when they are unknown.
func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += fmt.Sprintf(":%d", e.Line)
	}
	if e.Key != "" {
		s += ": " + e.Key
	}
	return s + ": " + e.Msg
}

// Errors returns every *Error in err's tree, in order: all the problems
// Parse or Load found. It returns nil when err holds none.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *Error:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, e := range e.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

// joinErrors joins errs so that Errors(err) returns them.
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}
