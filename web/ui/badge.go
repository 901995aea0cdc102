package ui

import (
	"cmp"
	"fmt"
	"html"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/pkg/store"
)

// badgeScan bounds how many builds a badge looks back past running ones
// for the last finished build.
const badgeScan = 50

// badgeWords and badgeColors are a badge's right side for each result
// code, in buildbot's badges plugin's colour scheme.
var (
	badgeWords  = []string{"passing", "warnings", "failing", "skipped", "exception", "retry", "cancelled"}
	badgeColors = []string{"#4c1", "#dfb317", "#e05d44", "#a4a61d", "#007ec6", "#007ec6", "#9f9f9f"}
)

const badgeUnknown = "#9f9f9f"

// badge serves /badges/BUILDER.svg: a flat shields-style image of the
// builder's last finished build, "BUILDER | passing" (or failing,
// warnings…); ?left_text= replaces the builder's name. An unknown builder
// gets a grey "not found" image with a 404.
func (s *Server) badge(w http.ResponseWriter, r *http.Request) {
	file := chi.URLParam(r, "file")
	name, ok := strings.CutSuffix(file, ".svg")
	if !ok {
		s.ErrorPage(w, r, http.StatusNotFound, "badges are BUILDER.svg")
		return
	}
	left := cmp.Or(r.URL.Query().Get("left_text"), name)
	b, err := s.cfg.Store.BuilderByName(name)
	if ok, err := found(err); err != nil {
		s.pageError(w, r, err)
		return
	} else if !ok {
		writeBadge(w, http.StatusNotFound, left, "not found", badgeUnknown)
		return
	}
	last, err := s.lastNumber(b.ID)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	builds, err := s.buildsDown(b.ID, last, badgeScan)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	word, color := "unknown", badgeUnknown
	for _, bd := range builds {
		if bd.Complete {
			word, color = badgeOf(bd)
			break
		}
	}
	writeBadge(w, http.StatusOK, left, word, color)
}

func badgeOf(b store.Build) (word, color string) {
	if b.Results >= 0 && b.Results < len(badgeWords) {
		return badgeWords[b.Results], badgeColors[b.Results]
	}
	return "unknown", badgeUnknown
}

// textWidth estimates the width of s in 11px Verdana.
func textWidth(s string) int {
	return utf8.RuneCountInString(s)*7 + 10
}

func writeBadge(w http.ResponseWriter, status int, left, right, color string) {
	lw, rw := textWidth(left), textWidth(right)
	l, rt := html.EscapeString(left), html.EscapeString(right)
	svg := fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%[1]d" height="20" role="img" aria-label="%[4]s: %[5]s">`+
		`<title>%[4]s: %[5]s</title>`+
		`<linearGradient id="s" x2="0" y2="100%%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>`+
		`<clipPath id="r"><rect width="%[1]d" height="20" rx="3" fill="#fff"/></clipPath>`+
		`<g clip-path="url(#r)"><rect width="%[2]d" height="20" fill="#555"/><rect x="%[2]d" width="%[3]d" height="20" fill="%[6]s"/><rect width="%[1]d" height="20" fill="url(#s)"/></g>`+
		`<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">`+
		`<text x="%[7]d" y="15" fill="#010101" fill-opacity=".3">%[4]s</text><text x="%[7]d" y="14">%[4]s</text>`+
		`<text x="%[8]d" y="15" fill="#010101" fill-opacity=".3">%[5]s</text><text x="%[8]d" y="14">%[5]s</text></g></svg>`+"\n",
		lw+rw, lw, rw, l, rt, color, lw/2, lw+rw/2)
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	w.Write([]byte(svg))
}
