package reporter

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
)

func TestScrubTextForms(t *testing.T) {
	t.Parallel()
	const user, pw = "bob", "s3cr3t/pa ss+word"
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, in := range []string{
		"raw " + pw,
		"escaped " + url.QueryEscape(pw) + " and " + url.PathEscape(pw),
		"basic " + b64(user+":"+pw),
		"url base64 " + base64.RawURLEncoding.EncodeToString([]byte(user+":"+pw)),
		"plain " + b64("\x00"+user+"\x00"+pw),
		"plain with authzid " + b64(user+"\x00"+user+"\x00"+pw),
		"cut at the end " + pw[:8],
		"cut in the middle " + b64(user + ":" + pw)[:10] + cutMark + " more",
		strings.Repeat("z", 990) + pw + " and more", // cut to its length only after
	} {
		got := scrubText(in, []string{pw}, []string{user, ""})
		for _, form := range []string{pw, b64(user + ":" + pw), b64("\x00" + user + "\x00" + pw), url.QueryEscape(pw)} {
			for i := 0; i+6 <= len(form); i++ {
				if strings.Contains(got, form[i:i+6]) {
					t.Errorf("scrubText(%q) = %q: holds %q of %q", in, got, form[i:i+6], form)
					break
				}
			}
		}
		if !strings.Contains(got, redacted) {
			t.Errorf("scrubText(%q) = %q: nothing redacted", in, got)
		}
	}
	if got := scrubText("nothing secret here", []string{pw}, []string{user}); got != "nothing secret here" {
		t.Errorf("text without secrets changed: %q", got)
	}
}

// TestScrubTextOddBase64: a secret (alone, as basic auth, as AUTH PLAIN)
// inside a longer base64 text, after any number of other bytes, in
// either alphabet, is hidden.
func TestScrubTextOddBase64(t *testing.T) {
	t.Parallel()
	const user, pw = "bob", "s3cr3t-Pa55word"
	for _, form := range []string{pw, user + ":" + pw, "\x00" + user + "\x00" + pw} {
		for pad := range 6 {
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding} {
				in := "got " + enc.EncodeToString([]byte(strings.Repeat("x", pad)+form+"tail")) + " end"
				got := scrubText(in, []string{pw}, []string{user})
				if l := oddLeaks(got, user, pw); len(l) > 0 || !strings.Contains(got, redacted) {
					t.Errorf("%q after %d bytes: scrubText(%q) = %q: holds %v", form, pad, in, got, l)
				}
			}
		}
	}
}
