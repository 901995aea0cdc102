package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gbb-ci/gbb/internal/daemon"
	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/web"
)

// status asks the master running in DIR for /healthz and /readyz on its
// web port (from master.toml, on loopback when it listens on every
// address): it prints whether it runs and is ready, and exits 0 only when
// ready. It believes no answer but the master's: the process of the pid
// file must be alive, and /readyz must prove, with the key of this start
// the master wrote beside its pid file, that the master answers, not
// another program on the port. With --wait it waits up to that long for
// ready (systemd's ExecStartPost). The rc.d script's status runs it.
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
	deadline := time.Now().Add(*wait)
	for {
		ready, pid, why := checkReady(dir, cfg.WWW)
		if ready {
			fmt.Printf("gbb-master is running as pid %d and ready\n", pid)
			return nil
		}
		if time.Now().After(deadline) {
			return &exitError{1, fmt.Errorf("master in %s: %s", dir, why)}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkReady says whether the master of dir runs (its pid) and is ready,
// or why not.
func checkReady(dir string, w config.WWW) (bool, int, string) {
	pid, err := daemon.ReadPID(filepath.Join(dir, pidFile))
	if err != nil {
		return false, 0, err.Error()
	}
	key, err := os.ReadFile(filepath.Join(dir, readyKeyFile))
	if err != nil {
		return false, pid, fmt.Sprintf("not running as a gbb-master: pid %d is alive but its key %s cannot be read: %v", pid, filepath.Join(dir, readyKeyFile), err)
	}
	ready, why := probe(w, key)
	if why != "" {
		why = fmt.Sprintf("pid %d %s", pid, why)
	}
	return ready, pid, why
}

// probe asks the web server of w for /healthz, then /readyz with a fresh
// nonce; it returns whether it is ready, or why not. The answer counts
// only with the proof that who answers holds key.
func probe(w config.WWW, key []byte) (bool, string) {
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
		// check dials; it sends no secret (the key stays here: the server
		// proves it holds it) and reads no data.
		scheme = "https"
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	base := scheme + "://" + net.JoinHostPort(host, strconv.Itoa(w.Port))
	nonce := rand.Text()
	get := func(path string) (int, string, http.Header, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return 0, "", nil, err
		}
		req.Header.Set(web.ReadyNonceHeader, nonce)
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", nil, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, strings.TrimSpace(string(body)), resp.Header, nil
	}
	if code, _, _, err := get("/healthz"); err != nil || code != http.StatusOK {
		if err == nil {
			err = errors.New("answered " + strconv.Itoa(code))
		}
		return false, fmt.Sprintf("is alive but not serving (%s/healthz: %v)", base, err)
	}
	code, body, h, err := get("/readyz")
	if err != nil {
		return false, fmt.Sprintf("is alive but %s/readyz failed: %v", base, err)
	}
	want := web.ReadyProof(key, nonce)
	if !hmac.Equal([]byte(h.Get(web.ReadyProofHeader)), []byte(want)) {
		return false, fmt.Sprintf("is alive but another program answers on %s: its /readyz does not prove it is this master (no or a wrong %s)", base, web.ReadyProofHeader)
	}
	if code != http.StatusOK {
		return false, "is running but " + body
	}
	return true, ""
}

// writeReadyKey writes a new random key of this start to path, readable
// by its user only, and returns it.
func writeReadyKey(path string) ([]byte, error) {
	key := []byte(rand.Text())
	// A file left by a master that died is replaced, never written
	// through (its mode may be wider).
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("replace %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write the ready key: %w", err)
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, fmt.Errorf("write the ready key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write the ready key: %w", err)
	}
	return key, nil
}
