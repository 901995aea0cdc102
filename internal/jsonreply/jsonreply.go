package jsonreply

import (
	"encoding/json"
	"net/http"
)

// Write answers status with v as JSON. A v that cannot be encoded is
// answered 500 with an error saying so.
func Write(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		data = []byte(`{"error":"cannot encode the reply"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}

// Error answers status with {"error": msg}.
func Error(w http.ResponseWriter, status int, msg string) {
	Write(w, status, map[string]any{"error": msg})
}
