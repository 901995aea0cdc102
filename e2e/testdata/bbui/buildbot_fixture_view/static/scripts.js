// A stand-in for one of buildbot's view plugins.
window.fixture.plugin = "fixture_view";
