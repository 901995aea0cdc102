package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/gbb-ci/gbb/pkg/protocol"
)

// fileConfig is DIR/worker.toml.
type fileConfig struct {
	// master is host:port, or several, comma-separated; masters is a
	// list of them; exactly one of the two. An entry host:port#sha256:HEX
	// pins that master's CA (see masterAddrs).
	Master           string   `toml:"master"`
	Masters          []string `toml:"masters"`
	Name             string   `toml:"name"`              //
	Password         string   `toml:"password"`          // password, or
	PasswordFile     string   `toml:"password_file"`     // password_file: a file holding it (trailing newline trimmed), relative to DIR; exactly one of the two
	Keepalive        duration `toml:"keepalive"`         // zero means 10s
	KeepaliveTimeout duration `toml:"keepalive_timeout"` // zero means 10s
	MinBackoff       duration `toml:"min_backoff"`       // zero means 1s
	MaxBackoff       duration `toml:"max_backoff"`       // zero means 30s
	// The worker link's TLS (see protocol.ClientTLS): tls_fingerprint
	// pins the master's CA (sha256:…, as create-master prints it),
	// tls_ca_file trusts a CA file (relative to DIR), tls = true trusts the
	// system's roots; none of them: plaintext. tls_server_name is the name
	// the master's certificate must hold (default: the host of master).
	// tls_cert_file and tls_key_file (relative to DIR) are a client
	// certificate, for a master with client_ca_file; with one, the
	// password may be left out.
	TLS           bool   `toml:"tls"`
	TLSFinger     string `toml:"tls_fingerprint"`
	TLSCAFile     string `toml:"tls_ca_file"`
	TLSServerName string `toml:"tls_server_name"`
	TLSCertFile   string `toml:"tls_cert_file"`
	TLSKeyFile    string `toml:"tls_key_file"`
	// LogFormat is log_format: worker.log as "text" (key=value lines, the
	// default when empty) or "json" (one JSON object a line); --log-format
	// overrides it.
	LogFormat string `toml:"log_format"`
}

// masterList is the masters' entries as written, from master or masters.
func (c fileConfig) masterList() []string {
	if len(c.Masters) > 0 || c.Master == "" {
		return c.Masters
	}
	return splitMasters(c.Master)
}

// masterAddrs is what the client dials (see masterAddrs).
func (c fileConfig) masterAddrs(dir string) ([]protocol.MasterAddr, error) {
	entries, err := parseMasters(c.masterList())
	if err != nil {
		return nil, err
	}
	return masterAddrs(entries, c.clientTLS(dir))
}

// clientTLS is c's TLS, its files relative to dir.
func (c fileConfig) clientTLS(dir string) protocol.ClientTLS {
	abs := func(p string) string {
		if p != "" && !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		return p
	}
	return protocol.ClientTLS{Fingerprint: c.TLSFinger, CAFile: abs(c.TLSCAFile), System: c.TLS,
		ServerName: c.TLSServerName, CertFile: abs(c.TLSCertFile), KeyFile: abs(c.TLSKeyFile)}
}

// duration is a worker.toml duration: a string such as "10s", or a whole
// number of seconds.
type duration time.Duration

func (d *duration) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		p, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*d = duration(p)
	case int64:
		*d = duration(time.Duration(v) * time.Second)
	default:
		return fmt.Errorf("expected a duration such as \"10s\" or a number of seconds, got %T", v)
	}
	return nil
}

const configName = "worker.toml"

// writeConfig writes a new DIR/worker.toml; it refuses to overwrite one.
func writeConfig(dir string, c fileConfig) error {
	var b bytes.Buffer
	b.WriteString("# gbb-worker configuration, written by create-worker.\n\n")
	if err := toml.NewEncoder(&b).Encode(struct {
		Master        string   `toml:"master,omitempty"`
		Masters       []string `toml:"masters,omitempty"`
		Name          string   `toml:"name"`
		Password      string   `toml:"password,omitempty"`
		TLS           bool     `toml:"tls,omitempty"`
		TLSFinger     string   `toml:"tls_fingerprint,omitempty"`
		TLSCAFile     string   `toml:"tls_ca_file,omitempty"`
		TLSServerName string   `toml:"tls_server_name,omitempty"`
		TLSCertFile   string   `toml:"tls_cert_file,omitempty"`
		TLSKeyFile    string   `toml:"tls_key_file,omitempty"`
	}{c.Master, c.Masters, c.Name, c.Password, c.TLS, c.TLSFinger, c.TLSCAFile, c.TLSServerName, c.TLSCertFile, c.TLSKeyFile}); err != nil {
		return err
	}
	b.WriteString(`
# Several masters (say, two on one PostgreSQL): list them as
#   masters = ["ci1.example.org:9989", "ci2.example.org:9989"]
# instead of master. The worker serves the first that answers; when it
# goes away, the next, in order, round-robin. An entry may end in
# #sha256:HEX to pin that master's CA when it differs from the others';
# the tls settings below apply to every master.

# Instead of password, password_file may name a file holding it (relative
# to this directory), so that the password stays out of this file. The
# password never crosses the wire: the worker answers the master's
# challenge with an HMAC of it.

# TLS to the master: pin the master's CA with the fingerprint that
# gbb-master create-master printed, or trust a CA file, or (tls = true) the
# system's roots for a public certificate. None of them: plaintext, for a
# master on loopback or a private link (jails on lo1) only.
#tls_fingerprint = "sha256:..."
#tls_ca_file = "master-ca.pem"
#tls = true
# The name the master's certificate must hold, when not the host of
# 'master' (say, 'master' is an address the certificate does not list).
#tls_server_name = "ci.example.org"
# A client certificate (its CN this worker's name), for a master with
# client_ca_file; with one, the password may be left out.
#tls_cert_file = "worker.crt"
#tls_key_file = "worker.key"

# How often to ping the master, and how long to wait for its answer,
# so that a dead master is noticed in seconds (defaults: 10s and 10s; gRPC
# pings no more often than every 10s). The master's own heartbeat, set by
# its [protocols.grpc] keepalive_interval and keepalive_timeout, also ends
# the connection when the master goes silent for their sum.
#keepalive = "10s"
#keepalive_timeout = "10s"

# Bounds of the jittered exponential backoff between attempts to reach
# the master (defaults: 1s and 30s).
#min_backoff = "1s"
#max_backoff = "30s"
`)
	path := filepath.Join(dir, configName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s already exists; not overwriting it", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loadConfig reads DIR/worker.toml. Errors name the file, line and key.
func loadConfig(dir string) (fileConfig, error) {
	path := filepath.Join(dir, configName)
	var c fileConfig
	src, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	md, err := toml.Decode(string(src), &c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return c, fmt.Errorf("%s:%d: %s", path, pe.Position.Line, pe.Message)
		}
		return c, fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	for _, k := range md.Undecoded() {
		errs = append(errs, fmt.Errorf("%s:%d: %s: unknown key", path, keyLine(src, k[0]), k))
	}
	masterKey := "master"
	switch {
	case md.IsDefined("master") && md.IsDefined("masters"):
		errs = append(errs, fmt.Errorf("%s:%d: masters: not with master (line %d): give one of the two", path, keyLine(src, "masters"), keyLine(src, "master")))
	case md.IsDefined("masters"):
		masterKey = "masters"
		if len(c.Masters) == 0 {
			errs = append(errs, fmt.Errorf("%s:%d: masters: empty: list at least one HOST:PORT", path, keyLine(src, "masters")))
		}
	case c.Master == "":
		errs = append(errs, fmt.Errorf("%s: master: required (or masters)", path))
	}
	if c.Name == "" {
		errs = append(errs, fmt.Errorf("%s: name: required", path))
	}
	masterOK := false
	if len(c.masterList()) > 0 && !(md.IsDefined("master") && md.IsDefined("masters")) {
		if _, err := parseMasters(c.masterList()); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %s: %w", path, keyLine(src, masterKey), masterKey, err))
		} else {
			masterOK = true
		}
	}
	switch {
	case c.Password != "" && c.PasswordFile != "":
		errs = append(errs, fmt.Errorf("%s:%d: password_file: not with password: give one of the two", path, keyLine(src, "password_file")))
	case c.PasswordFile != "":
		pf := c.PasswordFile
		if !filepath.IsAbs(pf) {
			pf = filepath.Join(dir, pf)
		}
		b, err := readPasswordFile(pf)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s:%d: password_file: %w", path, keyLine(src, "password_file"), err))
		case strings.TrimRight(string(b), "\r\n") == "":
			errs = append(errs, fmt.Errorf("%s:%d: password_file: %s is empty", path, keyLine(src, "password_file"), pf))
		default:
			c.Password = strings.TrimRight(string(b), "\r\n")
		}
	case c.Password == "" && c.TLSCertFile == "":
		errs = append(errs, fmt.Errorf("%s: password: required (or password_file, or tls_cert_file)", path))
	}
	if masterOK {
		if _, err := c.masterAddrs(dir); err != nil {
			errs = append(errs, fmt.Errorf("%s: tls: %w", path, err))
		}
	}
	if err := checkLogFormat(c.LogFormat); err != nil && c.LogFormat != "" {
		errs = append(errs, fmt.Errorf("%s:%d: log_format: %w", path, keyLine(src, "log_format"), err))
	}
	for _, d := range []struct {
		key string
		val time.Duration
	}{{"keepalive", time.Duration(c.Keepalive)}, {"keepalive_timeout", time.Duration(c.KeepaliveTimeout)}, {"min_backoff", time.Duration(c.MinBackoff)}, {"max_backoff", time.Duration(c.MaxBackoff)}} {
		if d.val < 0 {
			errs = append(errs, fmt.Errorf("%s:%d: %s: negative duration %s", path, keyLine(src, d.key), d.key, d.val))
		}
	}
	return c, errors.Join(errs...)
}

// keyLine finds the line that defines a top-level key or table in src (0
// when it cannot tell); worker.toml is flat, so a line scan is enough.
func keyLine(src []byte, key string) int {
	q := regexp.QuoteMeta(key)
	re := regexp.MustCompile(`^\s*(\[+\s*)?("` + q + `"|'` + q + `'|` + q + `)\s*[=.\]]`)
	sc := bufio.NewScanner(bytes.NewReader(src))
	for n := 1; sc.Scan(); n++ {
		if re.MatchString(sc.Text()) {
			return n
		}
	}
	return 0
}

// Placeholders create-worker writes, as buildbot-worker's do.
const (
	adminPlaceholder = "Your Name Here <admin@youraddress.invalid>\n"
	hostPlaceholder  = "Please put a description of this build host here\n"
)

// writeInfo writes DIR/info/admin and DIR/info/host unless they exist.
func writeInfo(dir string) error {
	info := filepath.Join(dir, "info")
	if err := os.MkdirAll(info, 0o755); err != nil {
		return err
	}
	for name, text := range map[string]string{"admin": adminPlaceholder, "host": hostPlaceholder} {
		f, err := os.OpenFile(filepath.Join(info, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return err
		}
		if _, err := f.WriteString(text); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	return nil
}

// workerInfo describes this host: basedir/info/admin and info/host, any
// other file in basedir/info (in Extra, by name), and the runtime's facts.
// A missing info directory is fine.
func workerInfo(basedir string) (protocol.WorkerInfo, error) {
	wi := protocol.WorkerInfo{
		OS:      runtime.GOOS,
		Arch:    runtime.GOARCH,
		Version: version,
		Basedir: basedir,
		NumCPU:  runtime.NumCPU(),
	}
	dir := filepath.Join(basedir, "info")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return wi, nil
	}
	if err != nil {
		return wi, err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return wi, err
		}
		text := strings.TrimSpace(string(b))
		switch e.Name() {
		case "admin":
			wi.Admin = text
		case "host":
			wi.Host = text
		default:
			if wi.Extra == nil {
				wi.Extra = map[string]string{}
			}
			wi.Extra[e.Name()] = text
		}
	}
	return wi, nil
}

// readPasswordFile reads a password file: a regular file of at most 64 KiB
// (a device or a FIFO is refused, never read or waited on).
func readPasswordFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	const max = 64 << 10
	switch {
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", path)
	case fi.Size() > max:
		return nil, fmt.Errorf("%s has %d bytes, more than the %d allowed", path, fi.Size(), max)
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// checkLogFormat returns an error naming the accepted values when f is not
// one of them ("text", "json"). The master's pkg/config has its twin; the
// worker links none of the master's packages.
func checkLogFormat(f string) error {
	if f != "text" && f != "json" {
		return fmt.Errorf("unknown log format %q (want \"text\" or \"json\")", f)
	}
	return nil
}

// logHandler returns the log's handler for format ("" is text).
func logHandler(w io.Writer, format string) slog.Handler {
	if format == "json" {
		return slog.NewJSONHandler(w, nil)
	}
	return slog.NewTextHandler(w, nil)
}
