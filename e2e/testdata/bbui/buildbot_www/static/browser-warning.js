// buildbot's browser warning runs as a classic script before the config.
window.fixtureWarning = true;
