package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A bcrypt hash at cost 4 (of "pw"), next to testHash at cost 10.
const testHashCost4 = "$2a$04$SJ.QNf9oi10S8IxJEZDfiOPt4CizuIxTqxP8rl6PcdskYgZmP/kfy"

func TestWarnings(t *testing.T) {
	t.Parallel()
	users := func(hashes ...string) string {
		s := "[www.auth]\ntype = \"users\"\n"
		for i, h := range hashes {
			s += "[[www.auth.users]]\nusername = \"" + string(rune('a'+i)) + "\"\npassword_hash = \"" + h + "\"\n"
		}
		return s
	}
	rule := func(actions, builders string) string {
		s := "[[www.authz.rules]]\nactions = " + actions + "\nroles = [\"admins\"]\n"
		if builders != "" {
			s += "builders = " + builders + "\n"
		}
		return s
	}
	tests := []struct {
		name, src string
		want      []string
	}{
		{"no auth", ``, nil},
		{"one cost, no rules", users(testHash, testHash), nil},
		{"all actions named", users(testHash) + "[www.authz]\n" + rule(`["*"]`, ""), nil},
		{"all actions named one by one", users(testHash) + "[www.authz]\n" + rule(`["force", "stop", "rebuild", "cancel", "pause", "unpause", "graceful", "kill", "enable"]`, ""), nil},
		{"all but enable", users(testHash) + "[www.authz]\n" + rule(`["force", "stop", "rebuild", "cancel", "pause", "unpause", "graceful", "kill"]`, ""), []string{
			`master.toml:7: www.authz.rules: the rules name some control actions but not enable: no one may do enable (added in this version; name it in a rule to allow it) (add them to a rule's actions, or use "*")`,
		}},
		{"the probe's rules", users(testHash) + "[www.authz]\n" + rule(`["stop", "rebuild", "cancel", "pause", "unpause", "kill"]`, ""), []string{
			`master.toml:7: www.authz.rules: the rules name some control actions but not force, graceful, enable: every logged-in user may do force, graceful; no one may do enable (added in this version; name it in a rule to allow it) (add them to a rule's actions, or use "*")`,
		}},
		{"a rule with builders names no worker or scheduler action", users(testHash) + "[www.authz]\n" + rule(`["*"]`, `["rel-*"]`), []string{
			`master.toml:7: www.authz.rules: the rules name some control actions but not pause, unpause, graceful, kill, enable: every logged-in user may do pause, unpause, graceful, kill; no one may do enable (added in this version; name it in a rule to allow it) (add them to a rule's actions, or use "*")`,
		}},
		{"change hooks without a secret", "[www.change_hook.base]\n[www.change_hook.github]\nsecret = \"s\"\n[www.change_hook.gitlab]\n", []string{
			`master.toml:1: www.change_hook.base: no secret: anyone who can reach the web port can add changes and start builds through POST /change_hook/base`,
			`master.toml:4: www.change_hook.gitlab: no secret: anyone who can reach the web port can add changes and start builds through POST /change_hook/gitlab`,
		}},
		{"a change hook without a secret on loopback", "[www]\ninterface = \"127.0.0.1\"\n[www.change_hook.base]\n", nil},
		{"a change hook without a secret on ::1", "[www]\ninterface = \"::1\"\n[www.change_hook.base]\n", nil},
		{"a change hook without a secret behind a proxy", "[www]\ninterface = \"127.0.0.1\"\ntrusted_proxies = [\"127.0.0.1\"]\n[www.change_hook.base]\n", []string{
			`master.toml:4: www.change_hook.base: no secret`,
		}},
		{"weak worker passwords", "[[workers]]\nname = \"a\"\npassword = \"pass\"\n" +
			"[[workers]]\nname = \"b\"\npassword = \"Correct-Horse-Battery-Staple\"\n" +
			"[[workers]]\nname = \"long-worker-name-here\"\npassword = \"long-worker-name-here\"\n" +
			"[[workers]]\nname = \"d\"\npassword = \"xxxxxxxxxxxxxxxxxxxx\"\n" +
			"[[workers]]\nname = \"e\"\npassword = \"dGhpcyBpcyBub3QgYSBndWVzcw\"\n", []string{
			`master.toml:1: workers: worker "a": its password is shorter than 16 characters: whoever records one of its logins`,
			`master.toml:4: workers: worker "b": its password is a well-known one`,
			`master.toml:7: workers: worker "long-worker-name-here": its password is the worker's name`,
			`master.toml:10: workers: worker "d": its password is one character repeated`,
		}},
		{"mixed costs", users(testHash, testHashCost4, testHash), []string{
			"master.toml:1: www.auth: the users' bcrypt hashes have different costs (cost 4: b; cost 10: a, c)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Parse("master.toml", []byte(tc.src))
			if err != nil {
				t.Fatal(err)
			}
			got := cfg.Warnings()
			// The bcrypt warning goes on to say why and how to fix; compare
			// its start, and check the rest once.
			for i, w := range got {
				if i < len(tc.want) && strings.HasPrefix(w, tc.want[i]) {
					if strings.Contains(w, "no secret") && !strings.Contains(w, "secret_file") {
						t.Errorf("the warning %q does not say how to fix it", w)
					}
					if strings.Contains(w, "bcrypt") && !strings.Contains(w, "gbb-master hashpw") {
						t.Errorf("the warning %q does not say how to fix it", w)
					}
					got[i] = tc.want[i]
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Warnings() (-want +got):\n%s", diff)
			}
		})
	}
}
