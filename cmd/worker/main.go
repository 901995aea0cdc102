package main

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// version is the worker's version, set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	sigs := make(chan os.Signal, 3)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	stops := newStopSignals(os.Exit)
	var watcher sync.WaitGroup
	watcher.Go(func() { stops.watch(sigs) })
	code := run(stops, os.Args[1:], os.Stdout, os.Stderr)
	signal.Stop(sigs)
	close(sigs)
	watcher.Wait()
	os.Exit(code)
}
