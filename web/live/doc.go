// Package live serves the live events of pkg/events: /sse/ (server-sent
// events, as buildbot's www/sse.py) and /ws (buildbot's WebSocket
// protocol, www/ws.py).
//
// Its one job is the streams: subscribing, replaying what a reconnecting
// client missed, keepalives, and closing them all at shutdown. It must not
// know the REST API's encoding (the server hands it an Encode function),
// the pages, or who may open a WebSocket (the server's AllowWS decides);
// it imports neither web/api nor web/ui.
package live
