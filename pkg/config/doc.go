// Package config loads and validates the master's TOML configuration.
//
// [Load] and [Parse] return a [Config], a plain value with every default
// filled in, or an error listing every problem found in the file at once,
// each as "FILE:LINE: KEY: message"; [Errors] returns them one by one.
// Keys are buildbot's BuildmasterConfig names in snake_case, and unknown
// keys are errors.
//
// A config is read in two passes: the first (include.go, factories.go,
// matrix.go) merges the include files, puts factories' steps into their
// builders and expands builder matrices, keeping where each value was
// written, so that the second (parse.go) names the file, line and key of
// every problem. [Dump] prints the first pass's result as TOML
// (docs/config-reuse.md).
//
// A force scheduler's custom form fields are an array of tables under it,
// each becoming a build property (see [ForceParam]):
//
//	[[schedulers]]
//	type = "force"
//	name = "force"
//	builder_names = ["runtests"]
//	  [[schedulers.params]]
//	  name = "target"             # the property
//	  type = "choice"             # string (the default), text, int, bool or choice
//	  label = "Target"
//	  default = "all"
//	  required = true
//	  choices = ["all", "docs"]   # choice only
//	  # regex = "^[a-z]+$"        # string and text only
package config
