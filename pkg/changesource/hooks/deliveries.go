package hooks

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Replays. A forge names each delivery (deliveryHeaders), and a change
// hook remembers the deliveries that made changes: the same delivery id
// sent again (compared without case), as a forge's retry or GitHub's
// "Redeliver" sends it, is answered 200 with no new change. The id is not
// under the signature, though: someone who captured a signed request could
// replay it with the id changed or removed. So a hook whose body is signed
// (github and gitea with a secret: an HMAC of the body) also remembers a
// SHA-256 of each body it accepted, and a known body is answered 200 with
// no new change whatever its id. A token (gitlab) or no secret (base)
// authenticates no body: whoever captured one request can send any body,
// so only the id is remembered for them, against retries.
//
// Ignoring a signed body seen before loses no legitimate event: a forge's
// events differ in their bytes. A GitHub or Gitea push carries the
// before and after SHAs of the ref and the repository's pushed_at or
// updated_at time of that push, so even the same ref moved the same way
// again (after a force-push back) has another body, except within the
// same second, where its changes would be those just made. A retry or a
// "Redeliver" of an event is the same event. Gitea's "Replay" of a past
// delivery (a new X-Gitea-Delivery, the same body) therefore makes no new
// change, as a retry would not; push again to build again.
//
// The signed bodies are remembered across dialects, by their hash alone:
// github and gitea may share a secret (one team, one secret), and a body
// captured from one must not be accepted once more by the other (a GitHub
// push is no Gitea push, but an HMAC is the same on both). Delivery ids are
// remembered by dialect, as each forge names its own deliveries.
//
// The change hooks remember their last maxDeliveries deliveries of the
// last deliveryTTL, all dialects together, in the store's state, written
// in the same transaction as their changes, so that a crash neither stores
// the changes without the record nor the record without the changes, and a
// restart forgets nothing. A captured request older than deliveryTTL, or
// pushed out by maxDeliveries newer ones, is no longer recognized.

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
	// maxDeliveries bounds how many deliveries the hooks remember, all
	// dialects together (some 150 bytes each in the store).
	maxDeliveries = 2000
	// maxDeliveryID bounds a delivery id; forges send UUIDs.
	maxDeliveryID = 128
)

// deliveryStateKey is the state key, under the object deliveryObject, of
// the deliveries of every dialect: a JSON list of delivery, oldest first.
const (
	deliveryObject   = "change_hook"
	deliveryStateKey = "deliveries"
)

// legacyDeliveryObject is where a dialect's own deliveries were stored
// before they were shared (under deliveryStateKey); they are read once,
// when deliveryObject is not stored yet.
func legacyDeliveryObject(dialect string) string { return "change_hook:" + dialect }

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

// delivery is one remembered delivery: its dialect, with its id, or the
// SHA-256 of its signed body, or both.
type delivery struct {
	Dialect string    `json:"dialect,omitempty"` // empty in a legacy record until read
	ID      string    `json:"id,omitempty"`
	Sum     string    `json:"sha256,omitempty"` // hex SHA-256 of a signed body
	At      time.Time `json:"at"`
}

// bodySum returns the hex SHA-256 of body.
func bodySum(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// deliveryLog is the deliveries of every dialect. Its mutex is held from
// the check of a delivery to the store's write of its changes, so that the
// same delivery (or the same signed body, to two dialects) sent twice at
// once makes its changes once. Its zero value is ready to use.
type deliveryLog struct {
	mu     sync.Mutex
	loaded bool       // guarded by mu; whether list was read from the store
	list   []delivery // guarded by mu; oldest first
}

// load reads the log from the store the first time: the shared record,
// or, before there is one, each dialect's legacy record, merged. l.mu must
// be held.
func (l *deliveryLog) load(sink Sink) error {
	if l.loaded {
		return nil
	}
	raw, found, err := sink.GetState(deliveryObject, deliveryStateKey)
	if err != nil {
		return fmt.Errorf("read the change hook deliveries: %w", err)
	}
	if found {
		if err := json.Unmarshal(raw, &l.list); err != nil {
			return fmt.Errorf("read the change hook deliveries: %w", err)
		}
		l.loaded = true
		return nil
	}
	var all []delivery
	for _, dialect := range slices.Sorted(maps.Keys(dialects)) {
		raw, found, err := sink.GetState(legacyDeliveryObject(dialect), deliveryStateKey)
		if err != nil {
			return fmt.Errorf("read the %s deliveries: %w", dialect, err)
		}
		if !found {
			continue
		}
		var list []delivery
		if err := json.Unmarshal(raw, &list); err != nil {
			return fmt.Errorf("read the %s deliveries: %w", dialect, err)
		}
		for _, d := range list {
			d.Dialect = dialect
			all = append(all, d)
		}
	}
	slices.SortStableFunc(all, func(a, b delivery) int { return a.At.Compare(b.At) })
	if len(all) > maxDeliveries {
		all = all[len(all)-maxDeliveries:]
	}
	l.list, l.loaded = all, true
	return nil
}

// seen returns the delivery remembered with the id (without case) of
// dialect, or with the body sum sum of any dialect; id and sum may be "".
// l.mu must be held.
func (l *deliveryLog) seen(dialect, id, sum string, now time.Time) (delivery, bool) {
	for _, d := range l.list {
		if now.Sub(d.At) >= deliveryTTL {
			continue
		}
		if id != "" && d.Dialect == dialect && strings.EqualFold(d.ID, id) || sum != "" && d.Sum == sum {
			return d, true
		}
	}
	return delivery{}, false
}

// with returns the log with d added at now, less the deliveries older
// than deliveryTTL and the oldest beyond maxDeliveries. l.mu must be held.
func (l *deliveryLog) with(d delivery, now time.Time) []delivery {
	keep := make([]delivery, 0, min(len(l.list)+1, maxDeliveries))
	first := max(0, len(l.list)+1-maxDeliveries)
	for _, old := range l.list[first:] {
		if now.Sub(old.At) < deliveryTTL {
			keep = append(keep, old)
		}
	}
	d.At = now.UTC()
	return append(keep, d)
}
