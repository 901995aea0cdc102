// Command gbb-master runs a gbb build master: buildbot's master, in Go.
package main
