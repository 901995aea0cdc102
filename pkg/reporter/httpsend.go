package reporter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// resultNames are buildbot's names of the result codes (Results).
var resultNames = []string{"success", "warnings", "failure", "skipped", "exception", "retry", "cancelled"}

// ResultName is the name of a result code, as buildbot's Results; a
// running build's -1 is "running".
func ResultName(results int) string {
	if results >= 0 && results < len(resultNames) {
		return resultNames[results]
	}
	return "running"
}

// postJSON posts body as JSON to rawURL with the headers set, and sorts
// the answer as the dispatcher wants: nil for a 2xx; a *RetryAfterError
// for a 429 or 503 with Retry-After; Permanent for a 4xx other than 408
// and 429; a plain error otherwise. Its errors never hold the URL (a
// webhook URL is often a secret) nor the headers.
func postJSON(ctx context.Context, client *http.Client, rawURL string, header http.Header, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return Permanent(fmt.Errorf("encode the report: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(data))
	if err != nil {
		return Permanent(errors.New("the rendered url is not a valid URL"))
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return Permanent(errors.New("the rendered url is not an http or https URL"))
	}
	if req.URL.Host == "" {
		return Permanent(errors.New("the rendered url has no host"))
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gbb")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("post to %s: %w", req.URL.Host, ue.Err)
		}
		return fmt.Errorf("post to %s: %w", req.URL.Host, err)
	}
	defer resp.Body.Close()
	// Enough to explain; cut only after the dispatcher took the secrets
	// out of it (an endpoint may echo them).
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)); n > 0 {
		snippet = append(bytes.TrimSpace(snippet), cutMark...)
	}
	if resp.StatusCode/100 == 2 {
		return nil
	}
	// Not %q: quoting would turn a secret's " and \ into \" and \\,
	// which the scrubbing would no longer find. Only what would break
	// the line is escaped.
	err = fmt.Errorf("post to %s: %s: %s", req.URL.Host, resp.Status, printable(bytes.TrimSpace(snippet)))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
		if after, ok := retryAfter(resp.Header, time.Now()); ok {
			return &RetryAfterError{After: after, Err: err}
		}
		return err
	case resp.StatusCode == http.StatusRequestTimeout:
		return err
	case resp.StatusCode/100 == 4:
		return Permanent(err)
	}
	return err
}

// printable is b with its control characters and invalid UTF-8 escaped
// as Go would quote them (\n, \x00), and nothing else changed.
func printable(b []byte) string {
	var out strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&out, `\x%02x`, b[0])
		case unicode.IsControl(r):
			q := strconv.QuoteRune(r)
			out.WriteString(q[1 : len(q)-1])
		default:
			out.Write(b[:n])
		}
		b = b[n:]
	}
	return out.String()
}
