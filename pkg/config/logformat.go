package config

import "fmt"

// The values of log_format (master.toml and worker.toml) and of the
// programs' --log-format.
const (
	LogFormatText = "text" // slog's key=value lines; the default
	LogFormatJSON = "json" // one JSON object a line, for log shippers
)

// CheckLogFormat returns an error naming the accepted values when f is
// not one of them.
func CheckLogFormat(f string) error {
	if f != LogFormatText && f != LogFormatJSON {
		return fmt.Errorf("unknown log format %q (want %q or %q)", f, LogFormatText, LogFormatJSON)
	}
	return nil
}
