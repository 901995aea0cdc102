// Package fnmatch matches names against shell patterns exactly as
// Python's fnmatch.fnmatchcase does, which buildbot's authz uses for
// builder names: "*" and "?" match any character, "/" included, "[...]" is
// a class and "[!...]" its negation, and nothing is an error.
//
// No Go library has these semantics (path.Match stops "*" at "/" and
// rejects patterns Python takes literally; gobwas/glob differs in classes),
// so the pattern is translated to a regexp as fnmatch.translate does.
package fnmatch
