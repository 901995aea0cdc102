// Package config loads and validates the master's TOML configuration.
//
// [Load] and [Parse] return a [Config], a plain value with every default
// filled in, or an error listing every problem found in the file at once,
// each as "FILE:LINE: KEY: message"; [Errors] returns them one by one.
// Keys are buildbot's BuildmasterConfig names in snake_case, and unknown
// keys are errors.
package config
