package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/internal/daemon"
	"github.com/gbb-ci/gbb/pkg/config"
)

// status asks the master running in DIR for /healthz and /readyz on its
// web port (from master.toml, on loopback when it listens on every
// address): it prints whether it runs and is ready, and exits 0 only when
// ready. With --wait it waits up to that long for ready (systemd's
// ExecStartPost). The rc.d script's status runs it.
func status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	wait := fs.Duration("wait", 0, "wait up to this long for the master to be ready")
	dir, err := oneDir(fs, args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(dir)
	if err != nil {
		return &exitError{1, badConfig(dir, "status", err)}
	}
	pid := ""
	if p, err := daemon.ReadPID(filepath.Join(dir, pidFile)); err == nil {
		pid = " as pid " + strconv.Itoa(p)
	}
	deadline := time.Now().Add(*wait)
	for {
		ready, why := probe(cfg.WWW)
		if ready {
			fmt.Printf("gbb-master is running%s and ready\n", pid)
			return nil
		}
		if time.Now().After(deadline) {
			return &exitError{1, fmt.Errorf("master in %s%s: %s", dir, pid, why)}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// probe asks the web server of w for /healthz, then /readyz; it returns
// whether it is ready, or why not.
func probe(w config.WWW) (bool, string) {
	host := w.Interface
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	scheme := "http"
	tr := &http.Transport{DisableKeepAlives: true}
	if w.TLS.Enabled() {
		// The certificate names the site, not the loopback address this
		// check dials; it sends no secret and reads no data.
		scheme = "https"
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	base := scheme + "://" + net.JoinHostPort(host, strconv.Itoa(w.Port))
	get := func(path string) (int, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return 0, "", err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, strings.TrimSpace(string(body)), nil
	}
	if code, _, err := get("/healthz"); err != nil || code != http.StatusOK {
		if err == nil {
			err = errors.New("answered " + strconv.Itoa(code))
		}
		return false, fmt.Sprintf("not running (%s/healthz: %v)", base, err)
	}
	code, body, err := get("/readyz")
	if err != nil {
		return false, fmt.Sprintf("running but %s/readyz failed: %v", base, err)
	}
	if code != http.StatusOK {
		return false, "running but " + body
	}
	return true, ""
}
