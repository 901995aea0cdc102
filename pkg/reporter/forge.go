package reporter

// forgeKinds makes the forges' reporters: commit statuses and pull request
// comments.
var forgeKinds = map[string]newFunc{}
