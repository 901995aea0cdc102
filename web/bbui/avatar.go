package bbui

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Avatar serves /avatar?email=...&username=...&size=N as buildbot's
// www/avatar.py: the first of Methods that knows answers, "identicon" with
// a picture drawn from the email (or the user name), offline, and
// "gravatar" with a redirect to gravatar.com (its "retro" default image
// for unknown addresses). Without methods it answers 404.
type Avatar struct {
	Methods []string
}

// gravatar is where the "gravatar" avatar method sends the browser.
const gravatar = "https://www.gravatar.com"

// defaultAvatarSize is buildbot's size when none or a bad one is asked.
const defaultAvatarSize = 32

func (a Avatar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	email := q.Get("email")
	if email == "" {
		// buildbot's UI writes its login bar's URL with "&amp;email=",
		// which url.ParseQuery drops for its ";".
		for _, part := range strings.Split(r.URL.RawQuery, "&") {
			if v, ok := strings.CutPrefix(part, "amp;email="); ok {
				email, _ = url.QueryUnescape(v)
			}
		}
	}
	size, err := strconv.Atoi(q.Get("size"))
	if err != nil || size <= 0 {
		size = defaultAvatarSize
	}
	size = min(size, 512)
	who := strings.ToLower(strings.TrimSpace(email))
	if who == "" {
		who = strings.TrimSpace(q.Get("username"))
	}
	for _, m := range a.Methods {
		switch m {
		case "gravatar":
			if email == "" {
				continue
			}
			sum := md5.Sum([]byte(strings.ToLower(email)))
			v := url.Values{"d": {"retro"}, "s": {strconv.Itoa(size)}}
			http.Redirect(w, r, gravatar+"/avatar/"+hex.EncodeToString(sum[:])+"?"+v.Encode(), http.StatusFound)
			return
		case "identicon":
			w.Header().Set("Content-Type", "image/svg+xml")
			w.Header().Set("Cache-Control", "public, max-age=86400")
			w.Write(identicon(who, size))
			return
		}
	}
	http.Error(w, "no avatar: [www] avatar_methods is empty", http.StatusNotFound)
}

// identicon draws a 5×5 mirrored pattern in one colour, both taken from
// the SHA-256 of who, as an SVG of size pixels: the same person always
// gets the same picture, two people most likely different ones.
func identicon(who string, size int) []byte {
	h := sha256.Sum256([]byte(who))
	hue := (int(h[0])<<8 | int(h[1])) % 360
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 5 5" shape-rendering="crispEdges">`, size, size)
	b.WriteString(`<rect width="5" height="5" fill="#f0f0f0"/>`)
	fmt.Fprintf(&b, `<g fill="hsl(%d,55%%,45%%)">`, hue)
	for y := range 5 {
		for x := range 3 {
			bit := y*3 + x
			if h[2+bit/8]>>(bit%8)&1 == 0 {
				continue
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="1" height="1"/>`, x, y)
			if x < 2 {
				fmt.Fprintf(&b, `<rect x="%d" y="%d" width="1" height="1"/>`, 4-x, y)
			}
		}
	}
	b.WriteString(`</g></svg>`)
	return []byte(b.String())
}
