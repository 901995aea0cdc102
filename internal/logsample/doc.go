// Package logsample thins out log lines of one kind that anyone on the
// network can cause at will (refused connections, failed logins), so that
// a flood of them writes a few lines, then one per interval, each saying
// how many were held back before it.
package logsample
