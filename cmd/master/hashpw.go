package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

// hashpw reads a password and prints its bcrypt hash, for the
// password_hash of a [[www.auth.users]] table or a line of an htpasswd
// file. On a terminal it asks twice without echo; otherwise it reads the
// first line of stdin.
func hashpw(args []string) error {
	fs := flag.NewFlagSet("hashpw", flag.ContinueOnError)
	cost := fs.Int("cost", bcrypt.DefaultCost, "bcrypt cost (4-31)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: gbb-master hashpw [-cost N] < password")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return &exitError{2, err}
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return &exitError{2, errors.New("hashpw takes no arguments (the password is read from stdin)")}
	}
	pw, err := readPassword(os.Stdin, os.Stderr)
	if err != nil {
		return err
	}
	h, err := hashPassword(pw, *cost)
	if err != nil {
		return err
	}
	fmt.Println(h)
	return nil
}

// hashPassword returns the bcrypt hash of pw.
func hashPassword(pw string, cost int) (string, error) {
	if pw == "" {
		return "", errors.New("empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// readPassword reads a password from in: twice without echo when in is a
// terminal (prompting on prompt), else its first line.
func readPassword(in *os.File, prompt io.Writer) (string, error) {
	fd := int(in.Fd())
	if !term.IsTerminal(fd) {
		line, err := bufio.NewReader(in).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read password: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fmt.Fprint(prompt, "Password: ")
	pw, err := term.ReadPassword(fd)
	fmt.Fprintln(prompt)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	fmt.Fprint(prompt, "Again: ")
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(prompt)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	if string(pw) != string(again) {
		return "", errors.New("the passwords differ")
	}
	return string(pw), nil
}
