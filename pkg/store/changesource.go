package store

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// changeSource is the part of a stored change a ChangeFilter looks at.
type changeSource struct{ Branch, Repository, Project string }

// matches says whether the change stored as v under k matches f's
// filters. It reads the three fields without decoding the rest: a
// filtered list walks every change, and decoding big ones (long comments,
// thousands of files) took seconds.
func (f ChangeFilter) matches(k, v []byte) (bool, error) {
	if f.Branch == "" && f.Repository == "" && f.Project == "" {
		return true, nil
	}
	src, ok := sourceOf(v)
	if !ok {
		// Not the compact JSON sourceOf reads: the slow way.
		if err := json.Unmarshal(v, &src); err != nil {
			return false, fmt.Errorf("decode change %d: %w", btoi(k), err)
		}
	}
	return (f.Branch == "" || src.Branch == f.Branch) && (f.Repository == "" || src.Repository == f.Repository) &&
		(f.Project == "" || src.Project == f.Project), nil
}

// sourceOf reads the Branch, Repository and Project of a change's JSON
// object v, skipping the other values by their extent only (strings to
// their closing quote, found with IndexByte). ok is false when v is not
// an object this reader understands; the caller then decodes it.
func sourceOf(v []byte) (src changeSource, ok bool) {
	i := skipSpace(v, 0)
	if i >= len(v) || v[i] != '{' {
		return src, false
	}
	i = skipSpace(v, i+1)
	if i < len(v) && v[i] == '}' {
		return src, true
	}
	for i < len(v) {
		if v[i] != '"' {
			return src, false
		}
		end := stringEnd(v, i)
		if end < 0 {
			return src, false
		}
		key := v[i+1 : end-1]
		i = skipSpace(v, end)
		if i >= len(v) || v[i] != ':' {
			return src, false
		}
		i = skipSpace(v, i+1)
		vend := valueEnd(v, i)
		if vend < 0 {
			return src, false
		}
		var dst *string
		switch string(key) {
		case "Branch":
			dst = &src.Branch
		case "Repository":
			dst = &src.Repository
		case "Project":
			dst = &src.Project
		}
		if dst != nil {
			if err := json.Unmarshal(v[i:vend], dst); err != nil {
				return src, false
			}
		}
		i = skipSpace(v, vend)
		if i >= len(v) {
			return src, false
		}
		switch v[i] {
		case '}':
			return src, skipSpace(v, i+1) == len(v)
		case ',':
			i = skipSpace(v, i+1)
		default:
			return src, false
		}
	}
	return src, false
}

func skipSpace(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r') {
		i++
	}
	return i
}

// stringEnd is the index after the string starting with the quote at
// v[i], or -1.
func stringEnd(v []byte, i int) int {
	j := i + 1
	for {
		q := bytes.IndexByte(v[j:], '"')
		if q < 0 {
			return -1
		}
		j += q
		// Escaped when an odd number of backslashes precede it.
		n := 0
		for k := j - 1; k > i && v[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return j + 1
		}
		j++
	}
}

// valueEnd is the index after the JSON value starting at v[i], or -1.
func valueEnd(v []byte, i int) int {
	if i >= len(v) {
		return -1
	}
	switch v[i] {
	case '"':
		return stringEnd(v, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(v); {
			switch v[j] {
			case '"':
				if j = stringEnd(v, j); j < 0 {
					return -1
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
			j++
		}
		return -1
	}
	j := i
	for j < len(v) && v[j] != ',' && v[j] != '}' && v[j] != ']' && v[j] != ' ' && v[j] != '\n' && v[j] != '\t' && v[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
