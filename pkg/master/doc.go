// Package master runs a build master: it opens the store, brings it in line
// with the config, and runs the worker port, the build engine, the
// schedulers and the web server until it is stopped.
package master
