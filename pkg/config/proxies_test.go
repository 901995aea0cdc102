package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	cfg := mustParse(t, "master.toml", "[www]\ntrusted_proxies = [\"10.1.1.1\", \"127.0.0.0/8\", \"fd00::/8\", \"::ffff:10.1.1.2\", \"10.2.3.4/16\"]\n")
	want := []string{"10.1.1.1/32", "127.0.0.0/8", "fd00::/8", "10.1.1.2/32", "10.2.0.0/16"}
	var got []string
	for _, p := range cfg.WWW.TrustedProxies {
		got = append(got, p.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TrustedProxies (-want +got):\n%s", diff)
	}
	if got := mustParse(t, "master.toml", "[www]\nport = 8010\n").WWW.TrustedProxies; got != nil {
		t.Errorf("no trusted_proxies: %v, want none", got)
	}

	_, err := Parse("master.toml", []byte("[www]\ntrusted_proxies = [\"10.1.1.1\", \"nginx\", \"10.0.0.0/33\"]\n"))
	var errs []string
	for _, e := range Errors(err) {
		errs = append(errs, e.Error())
	}
	wantErrs := []string{
		`master.toml:2: www.trusted_proxies[1]: "nginx" is neither an IP address nor a CIDR prefix`,
		`master.toml:2: www.trusted_proxies[2]: "10.0.0.0/33" is neither an IP address nor a CIDR prefix`,
	}
	if diff := cmp.Diff(wantErrs, errs); diff != "" {
		t.Errorf("errors (-want +got):\n%s", diff)
	}
}
