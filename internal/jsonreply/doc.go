// Package jsonreply writes JSON replies, the one encoding that the REST
// API, the controls and the change hooks answer with: the value, a
// newline, and Content-Type application/json; charset=utf-8. It knows
// nothing of who asks or why.
package jsonreply
