package reporter

// mailKinds makes the mail reporter (buildbot's MailNotifier).
var mailKinds = map[string]newFunc{}
