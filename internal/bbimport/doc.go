// Package bbimport turns a buildbot master.cfg into a gbb master.toml
// (gbb-master import-buildbot): it loads the file with buildbot's own Python
// loader, run from an embedded script that writes the loaded configuration
// as JSON on a pipe of its own (master.cfg's prints go to stderr), and writes the TOML of what it built, with factories and
// matrices where builders share steps, and a counted "# import-buildbot:"
// comment for each thing gbb cannot express.
package bbimport
