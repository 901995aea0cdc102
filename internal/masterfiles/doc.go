// Package masterfiles says which paths of a master's basedir a transfer step
// may not read or write: the master's own files (config, store, logs, pid,
// secrets), with every path resolved through its symlinks as the kernel
// would resolve it.
package masterfiles
