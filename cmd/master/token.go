package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/gbb-ci/gbb/pkg/config"
)

// tokenPrefix starts every token new-token makes, so that secret
// scanners and people can tell what it is.
const tokenPrefix = "gbb_"

// newToken makes an API token: it prints the token once (the master keeps
// only its SHA-256) and the [[www.auth.tokens]] table to paste into
// master.toml.
func newToken(args []string) error {
	fs := flag.NewFlagSet("new-token", flag.ContinueOnError)
	groups := fs.String("groups", "", "comma-separated groups (roles) of the token")
	actions := fs.String("actions", "", `comma-separated actions the token is limited to (`+strings.Join(config.AuthzActions, ", ")+`, *); "none" for a read-only token; empty: what its roles allow`)
	builders := fs.String("builders", "", "comma-separated builder patterns the token is limited to; empty: any builder")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: gbb-master new-token [-groups G,...] [-actions A,...|none] [-builders PATTERN,...] NAME")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return &exitError{2, err}
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		fs.Usage()
		return &exitError{2, errors.New("new-token takes the token's name (the user name it acts as)")}
	}
	t := config.Token{Name: fs.Arg(0), Groups: splitList(*groups), Builders: splitList(*builders)}
	switch *actions {
	case "":
	case "none":
		t.Actions = []string{}
	default:
		t.Actions = splitList(*actions)
	}
	token := randomToken()
	t.SHA256 = hashToken(token)
	block := tokenTable(t)
	// The block is checked as master.toml would take it.
	if _, err := config.Parse("new-token", []byte("[www.auth]\ntype = \"users\"\n"+block)); err != nil {
		return &exitError{2, err}
	}
	fmt.Printf("%s\n\n# The token above is shown once; the master keeps only its SHA-256.\n# Clients send it as \"Authorization: Bearer TOKEN\". For master.toml:\n%s", token, block)
	return nil
}

// hashTokenCmd reads a token (the first line of stdin) and prints the
// token_sha256 of a [[www.auth.tokens]] table for it.
func hashTokenCmd(args []string) error {
	if len(args) != 0 {
		return &exitError{2, errors.New("usage: gbb-master hash-token < token (it takes no arguments)")}
	}
	h, err := hashTokenFrom(os.Stdin)
	if err != nil {
		return err
	}
	fmt.Println(h)
	return nil
}

// hashTokenFrom reads a token from in (its first line, or the terminal
// without echo) and returns its token_sha256.
func hashTokenFrom(in *os.File) (string, error) {
	tok, err := readPassword(in, os.Stderr)
	if err != nil {
		return "", err
	}
	if tok = strings.TrimSpace(tok); tok == "" {
		return "", errors.New("empty token")
	}
	return hashToken(tok), nil
}

// randomToken returns a new token: the prefix and 32 random bytes.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// hashToken returns the lowercase hex SHA-256 of tok, as token_sha256.
func hashToken(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// tokenTable returns t as a [[www.auth.tokens]] table.
func tokenTable(t config.Token) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[[www.auth.tokens]]\nname = %s\ntoken_sha256 = %q\n", strconv.Quote(t.Name), t.SHA256)
	list := func(key string, vs []string) {
		q := make([]string, len(vs))
		for i, v := range vs {
			q[i] = strconv.Quote(v)
		}
		fmt.Fprintf(&b, "%s = [%s]\n", key, strings.Join(q, ", "))
	}
	if t.Groups != nil {
		list("groups", t.Groups)
	}
	if t.Actions != nil {
		list("actions", t.Actions)
	}
	if t.Builders != nil {
		list("builders", t.Builders)
	}
	return b.String()
}

// splitList splits a comma-separated flag; "" is nil.
func splitList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
