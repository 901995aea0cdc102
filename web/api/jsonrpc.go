package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/pkg/scheduler"
)

// JSON-RPC 2.0 error codes, as buildbot's.
const (
	RPCParseError     = -32700
	RPCInvalidRequest = -32600
	RPCMethodNotFound = -32601
	RPCInvalidParams  = -32602
	RPCInternalError  = -32603
)

// MaxRPCBody bounds the body of a JSON-RPC call or of a form.
const MaxRPCBody = 1 << 20

// RPCRequest is a JSON-RPC 2.0 call.
type RPCRequest struct {
	JSONRPC string                     `json:"jsonrpc"`
	Method  string                     `json:"method"`
	ID      json.RawMessage            `json:"id"`
	Params  map[string]json.RawMessage `json:"params"`
}

// RPCError is a JSON-RPC error with the HTTP status it is sent with.
type RPCError struct {
	status  int
	code    int
	message string
	field   string // the bad parameter of a *scheduler.ParamError, or ""
}

// Status is the HTTP status e is sent with.
func (e *RPCError) Status() int { return e.status }

// Message is what e says.
func (e *RPCError) Message() string { return e.message }

// Field is the force parameter e is about, or "".
func (e *RPCError) Field() string { return e.field }

func writeRPCError(w http.ResponseWriter, id json.RawMessage, e RPCError) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	jsonreply.Write(w, e.status, map[string]any{
		"jsonrpc": "2.0",
		"id":      id,
		"error":   map[string]any{"code": e.code, "message": e.message},
	})
}

// writeRPCResult answers a JSON-RPC call with its result.
func writeRPCResult(w http.ResponseWriter, id json.RawMessage, res any) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	jsonreply.Write(w, http.StatusOK, map[string]any{"id": id, "jsonrpc": "2.0", "result": res})
}

// force runs a force request and maps its errors to JSON-RPC ones.
func (s *Server) force(ctx context.Context, name string, fr scheduler.ForceRequest) (int64, map[int64]int64, *RPCError) {
	if s.cfg.Forcer == nil {
		return 0, nil, &RPCError{status: http.StatusNotFound, code: RPCInvalidRequest, message: "no such forcescheduler " + name}
	}
	bsid, brids, err := s.cfg.Forcer.Force(ctx, name, fr)
	var pe *scheduler.ParamError
	switch {
	case err == nil:
		s.log.Info("forced build", "scheduler", name, "buildset", bsid, "owner", fr.Owner)
		return bsid, brids, nil
	case errors.As(err, &pe):
		return 0, nil, &RPCError{http.StatusBadRequest, RPCInvalidParams, pe.Error(), pe.Field}
	case errors.Is(err, scheduler.ErrDisabled):
		return 0, nil, &RPCError{status: http.StatusConflict, code: RPCInvalidRequest, message: "forcescheduler " + name + " is disabled"}
	case errors.Is(err, scheduler.ErrNoScheduler):
		return 0, nil, &RPCError{status: http.StatusNotFound, code: RPCInvalidRequest, message: "no such forcescheduler " + name}
	}
	s.log.Error("force", "scheduler", name, "err", err)
	return 0, nil, &RPCError{status: http.StatusInternalServerError, code: RPCInternalError, message: "internal error"}
}

// rpcContentTypeHelp is the refusal of a JSON-RPC call not sent as
// application/json.
const rpcContentTypeHelp = "JSON-RPC calls must be sent with Content-Type: application/json (with curl: -H 'Content-Type: application/json')"

// decodeRPC reads a JSON-RPC 2.0 call: exactly one JSON object, nothing
// after it but white space. Like buildbot it takes no batches, only named
// params, and only Content-Type application/json: a browser sends that
// type to another site only after a CORS preflight, which gbb never
// grants, so no other site's page can make one (see web/auth/csrf.go). It is called
// once per request, by Authorize; the handlers take its result from there.
func decodeRPC(w http.ResponseWriter, r *http.Request) (RPCRequest, *RPCError) {
	var req RPCRequest
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return req, &RPCError{http.StatusUnsupportedMediaType, RPCInvalidRequest, rpcContentTypeHelp, ""}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxRPCBody))
	var raw json.RawMessage
	err = dec.Decode(&raw)
	if err == nil {
		// Anything but white space after the call is refused: a reader that
		// stopped at the first value would act on a call that another
		// reader of the same body saw differently.
		if _, terr := dec.Token(); terr != io.EOF {
			err = errTrailingData
			if _, ok := errors.AsType[*http.MaxBytesError](terr); ok {
				err = terr
			}
		}
	}
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return req, &RPCError{http.StatusRequestEntityTooLarge, RPCInvalidRequest, fmt.Sprintf("request body larger than %d bytes", MaxRPCBody), ""}
		}
		return req, &RPCError{http.StatusBadRequest, RPCParseError, "JSON parse error: " + err.Error(), ""}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return req, &RPCError{http.StatusBadRequest, RPCInvalidRequest, "JSONRPC root object must be an object", ""}
	}
	// As buildbot's, an id that is no string, number or null is refused,
	// and not echoed: JSON-RPC 2.0 allows no other (true, which
	// buildbot's Python takes for the number 1, included).
	if id := bytes.TrimSpace(top["id"]); len(id) > 0 && (id[0] == '{' || id[0] == '[' || id[0] == 't' || id[0] == 'f') {
		return req, &RPCError{http.StatusBadRequest, RPCInvalidRequest, "'id' must be a string, number, or null", ""}
	}
	req.ID = top["id"]
	if err := json.Unmarshal(raw, &req); err != nil {
		return req, &RPCError{http.StatusBadRequest, RPCInvalidRequest, "bad JSONRPC request: " + err.Error(), ""}
	}
	switch {
	case req.JSONRPC != "2.0":
		return req, &RPCError{http.StatusBadRequest, RPCInvalidRequest, "only JSONRPC 2.0 is supported", ""}
	case req.Method == "":
		return req, &RPCError{http.StatusBadRequest, RPCInvalidRequest, "missing key 'method'", ""}
	case req.Params == nil:
		return req, &RPCError{http.StatusBadRequest, RPCInvalidRequest, "'params' must be an object", ""}
	}
	return req, nil
}

// errTrailingData is the parse error of a body with more after its call.
var errTrailingData = errors.New("data after the JSON-RPC call (send one JSON object only)")

// forceRequestFromRPC reads buildbot's force parameters; the ones it does
// not know become build properties.
func forceRequestFromRPC(params map[string]json.RawMessage) (scheduler.ForceRequest, error) {
	var fr scheduler.ForceRequest
	strs := map[string]*string{
		"reason": &fr.Reason, "branch": &fr.Branch, "revision": &fr.Revision,
		"repository": &fr.Repository, "project": &fr.Project,
	}
	var owner, username string
	strs["owner"], strs["username"] = &owner, &username
	for name, raw := range params {
		if dst, ok := strs[name]; ok {
			if string(raw) == "null" {
				continue
			}
			if err := json.Unmarshal(raw, dst); err != nil {
				return fr, fmt.Errorf("%s must be a string", name)
			}
			continue
		}
		switch name {
		case "builderid":
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				return fr, fmt.Errorf("builderid must be an integer")
			}
			id, err := intParam(v)
			if err != nil {
				return fr, fmt.Errorf("builderid must be an integer")
			}
			fr.BuilderID = id
		case "priority":
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				return fr, fmt.Errorf("priority must be an integer")
			}
			p, err := intParam(v)
			if err != nil {
				return fr, fmt.Errorf("priority must be an integer")
			}
			prio := int(p)
			fr.Priority = &prio
		case "builderNames":
			if err := json.Unmarshal(raw, &fr.BuilderNames); err != nil {
				return fr, fmt.Errorf("builderNames must be a list of strings")
			}
			seen := map[string]bool{}
			for _, n := range fr.BuilderNames {
				if seen[n] {
					return fr, fmt.Errorf("builderNames: %q is given twice", n)
				}
				seen[n] = true
			}
		default:
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				return fr, fmt.Errorf("%s: %v", name, err)
			}
			if fr.Properties == nil {
				fr.Properties = map[string]any{}
			}
			fr.Properties[name] = v
		}
	}
	fr.Owner = username
	if fr.Owner == "" {
		fr.Owner = owner
	}
	return fr, nil
}

// intParam reads an integer given as a JSON number or a decimal string.
func intParam(v any) (int64, error) {
	switch v := v.(type) {
	case float64:
		if v == float64(int64(v)) {
			return int64(v), nil
		}
	case string:
		return strconv.ParseInt(v, 10, 64)
	case nil:
		return 0, nil
	}
	return 0, fmt.Errorf("not an integer")
}
