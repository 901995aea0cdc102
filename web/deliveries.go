package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Replays. A forge names each delivery (deliveryHeaders); a delivery that
// made changes is remembered, and the same delivery sent again, whether
// the forge retries it or someone replays a captured request, is answered
// 200 with no new change. Each dialect remembers its last maxDeliveries
// deliveries of the last deliveryTTL in the store's state, written in the
// same transaction as their changes, so that a crash neither stores the
// changes without the id nor the id without the changes, and a restart
// forgets nothing: a forge that retries after a restart, or GitHub's
// "Redeliver" (the same X-GitHub-Delivery; allowed for 3 days on
// github.com, 7 on GitHub Enterprise), makes no second change. A new
// delivery of the same event (another id, say Gitea's "Replay", which
// sends a new X-Gitea-Delivery) does make new changes.

// deliveryHeaders are the headers that name a delivery, by dialect, the
// first present winning. GitLab sends Idempotency-Key (the same on its
// retries) since 17.4, X-Gitlab-Event-UUID before; Forgejo and Gogs send
// their own name of Gitea's header.
var deliveryHeaders = map[string][]string{
	"github": {"X-GitHub-Delivery"},
	"gitlab": {"Idempotency-Key", "X-Gitlab-Event-UUID"},
	"gitea":  {"X-Gitea-Delivery", "X-Forgejo-Delivery", "X-Gogs-Delivery"},
}

const (
	// deliveryTTL is how long a delivery is remembered.
	deliveryTTL = 7 * 24 * time.Hour
	// maxDeliveries bounds how many deliveries a dialect remembers (some
	// 70 bytes each in the store).
	maxDeliveries = 1000
	// maxDeliveryID bounds a delivery id; forges send UUIDs.
	maxDeliveryID = 128
)

// deliveryStateKey is the state key, under the object "change_hook:DIALECT",
// of a dialect's deliveries: a JSON list of delivery, oldest first.
const deliveryStateKey = "deliveries"

func deliveryObject(dialect string) string { return "change_hook:" + dialect }

// deliveryID returns the id of the delivery h carries for dialect, or ""
// when it names none. An id that is too long or not printable ASCII is an
// error.
func deliveryID(dialect string, h http.Header) (string, error) {
	for _, name := range deliveryHeaders[dialect] {
		id := h.Get(name)
		if id == "" {
			continue
		}
		if len(id) > maxDeliveryID {
			return "", badHook("%s is longer than %d bytes", name, maxDeliveryID)
		}
		for i := range len(id) {
			if id[i] <= ' ' || id[i] > '~' {
				return "", badHook("%s has a character other than printable ASCII", name)
			}
		}
		return id, nil
	}
	return "", nil
}

// delivery is one remembered delivery.
type delivery struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// hookDeliveries remembers each dialect's deliveries. Its zero value is
// ready to use; it is safe for concurrent use.
type hookDeliveries struct {
	mu      sync.Mutex
	dialect map[string]*deliveryLog // guarded by mu
}

// of returns the log of dialect.
func (h *hookDeliveries) of(dialect string) *deliveryLog {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dialect == nil {
		h.dialect = map[string]*deliveryLog{}
	}
	l, ok := h.dialect[dialect]
	if !ok {
		l = &deliveryLog{}
		h.dialect[dialect] = l
	}
	return l
}

// deliveryLog is one dialect's deliveries. Its mutex is held from the
// check of a delivery to the store's write of its changes, so that the
// same delivery sent twice at once makes its changes once.
type deliveryLog struct {
	mu     sync.Mutex
	loaded bool       // guarded by mu; whether list was read from the store
	list   []delivery // guarded by mu; oldest first
}

// load reads the log from the store the first time. l.mu must be held.
func (l *deliveryLog) load(sink ChangeSink, dialect string) error {
	if l.loaded {
		return nil
	}
	raw, found, err := sink.GetState(deliveryObject(dialect), deliveryStateKey)
	if err != nil {
		return fmt.Errorf("read the %s deliveries: %w", dialect, err)
	}
	if found {
		if err := json.Unmarshal(raw, &l.list); err != nil {
			return fmt.Errorf("read the %s deliveries: %w", dialect, err)
		}
	}
	l.loaded = true
	return nil
}

// seen returns when the delivery id was received, if it is remembered.
// l.mu must be held.
func (l *deliveryLog) seen(id string, now time.Time) (time.Time, bool) {
	for _, d := range l.list {
		if d.ID == id && now.Sub(d.At) < deliveryTTL {
			return d.At, true
		}
	}
	return time.Time{}, false
}

// with returns the log with id added at now, less the deliveries older
// than deliveryTTL and the oldest beyond maxDeliveries. l.mu must be held.
func (l *deliveryLog) with(id string, now time.Time) []delivery {
	keep := make([]delivery, 0, min(len(l.list)+1, maxDeliveries))
	first := max(0, len(l.list)+1-maxDeliveries)
	for _, d := range l.list[first:] {
		if now.Sub(d.At) < deliveryTTL {
			keep = append(keep, d)
		}
	}
	return append(keep, delivery{ID: id, At: now.UTC()})
}
