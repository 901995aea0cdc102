package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/gbb-ci/gbb/internal/jsonreply"
	"github.com/gbb-ci/gbb/pkg/scheduler"
)

// JSON-RPC 2.0 error codes, as buildbot's.
const (
	rpcParseError     = -32700
	rpcInvalidRequest = -32600
	rpcMethodNotFound = -32601
	rpcInvalidParams  = -32602
	rpcInternalError  = -32603
)

// maxRPCBody bounds a JSON-RPC request body.
const maxRPCBody = 1 << 20

// rpcRequest is a JSON-RPC 2.0 call.
type rpcRequest struct {
	JSONRPC string                     `json:"jsonrpc"`
	Method  string                     `json:"method"`
	ID      json.RawMessage            `json:"id"`
	Params  map[string]json.RawMessage `json:"params"`
}

// rpcError is a JSON-RPC error with the HTTP status it is sent with.
type rpcError struct {
	status  int
	code    int
	message string
	field   string // the bad parameter of a *scheduler.ParamError, or ""
}

func writeRPCError(w http.ResponseWriter, id json.RawMessage, e rpcError) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	jsonreply.Write(w, e.status, map[string]any{
		"jsonrpc": "2.0",
		"id":      id,
		"error":   map[string]any{"code": e.code, "message": e.message},
	})
}

// forceRPC serves buildbot's "force" control on /forceschedulers/NAME, as
// authorize decoded it.
func (s *Server) forceRPC(w http.ResponseWriter, r *http.Request) {
	c, ok := s.callOf(w, r)
	if !ok {
		return
	}
	bsid, brids, rerr := s.force(r, chi.URLParam(r, "scheduler"), *c.force)
	if rerr != nil {
		writeRPCError(w, c.rpc.ID, *rerr)
		return
	}
	writeRPCResult(w, c.rpc.ID, []any{bsid, brids})
}

// writeRPCResult answers a JSON-RPC call with its result.
func writeRPCResult(w http.ResponseWriter, id json.RawMessage, res any) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	jsonreply.Write(w, http.StatusOK, map[string]any{"id": id, "jsonrpc": "2.0", "result": res})
}

// force runs a force request and maps its errors to JSON-RPC ones.
func (s *Server) force(r *http.Request, name string, fr scheduler.ForceRequest) (int64, map[int64]int64, *rpcError) {
	if s.cfg.Forcer == nil {
		return 0, nil, &rpcError{status: http.StatusNotFound, code: rpcInvalidRequest, message: "no such forcescheduler " + name}
	}
	bsid, brids, err := s.cfg.Forcer.Force(r.Context(), name, fr)
	var pe *scheduler.ParamError
	switch {
	case err == nil:
		s.log.Info("forced build", "scheduler", name, "buildset", bsid, "owner", fr.Owner)
		return bsid, brids, nil
	case errors.As(err, &pe):
		return 0, nil, &rpcError{http.StatusBadRequest, rpcInvalidParams, pe.Error(), pe.Field}
	case errors.Is(err, scheduler.ErrNoScheduler):
		return 0, nil, &rpcError{status: http.StatusNotFound, code: rpcInvalidRequest, message: "no such forcescheduler " + name}
	}
	s.log.Error("force", "scheduler", name, "err", err)
	return 0, nil, &rpcError{status: http.StatusInternalServerError, code: rpcInternalError, message: "internal error"}
}

// rpcContentTypeHelp is the refusal of a JSON-RPC call not sent as
// application/json.
const rpcContentTypeHelp = "JSON-RPC calls must be sent with Content-Type: application/json (with curl: -H 'Content-Type: application/json')"

// decodeRPC reads a JSON-RPC 2.0 call: exactly one JSON object, nothing
// after it but white space. Like buildbot it takes no batches, only named
// params, and only Content-Type application/json: a browser sends that
// type to another site only after a CORS preflight, which gbb never
// grants, so no other site's page can make one (see csrf.go). It is called
// once per request, by authorize; the handlers take its result from there.
func decodeRPC(w http.ResponseWriter, r *http.Request) (rpcRequest, *rpcError) {
	var req rpcRequest
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return req, &rpcError{http.StatusUnsupportedMediaType, rpcInvalidRequest, rpcContentTypeHelp, ""}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRPCBody))
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
			return req, &rpcError{http.StatusRequestEntityTooLarge, rpcInvalidRequest, fmt.Sprintf("request body larger than %d bytes", maxRPCBody), ""}
		}
		return req, &rpcError{http.StatusBadRequest, rpcParseError, "JSON parse error: " + err.Error(), ""}
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return req, &rpcError{http.StatusBadRequest, rpcInvalidRequest, "JSONRPC root object must be an object", ""}
	}
	req.ID = top["id"]
	if err := json.Unmarshal(raw, &req); err != nil {
		return req, &rpcError{http.StatusBadRequest, rpcInvalidRequest, "bad JSONRPC request: " + err.Error(), ""}
	}
	switch {
	case req.JSONRPC != "2.0":
		return req, &rpcError{http.StatusBadRequest, rpcInvalidRequest, "only JSONRPC 2.0 is supported", ""}
	case req.Method == "":
		return req, &rpcError{http.StatusBadRequest, rpcInvalidRequest, "missing key 'method'", ""}
	case req.Params == nil:
		return req, &rpcError{http.StatusBadRequest, rpcInvalidRequest, "'params' must be an object", ""}
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
