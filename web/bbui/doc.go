// Package bbui serves buildbot's own web app (its React UI, installed
// apart: gbb does not ship it) at /buildbot-ui/, in front of gbb's API:
// its index.html with window.buildbotFrontendConfig put in as buildbot's
// www service does, its static files and the plugins installed beside it;
// and /avatar, the pictures of the people its pages show.
package bbui
