package store

import (
	"encoding/json"
	"fmt"
)

// pgControlChannel is the NOTIFY channel of the control messages between
// masters (see Control). They do not go through gbb_events, whose
// notifications are batches of records for every master's bus: a control
// message is for one master, which acts on it, and changes no record by
// itself.
const pgControlChannel = "gbb_control"

// SendControl sends c to master c.To, as a NOTIFY on gbb_control sent
// only if that master is active (one statement: the check and the send
// cannot be split by the master's expiry). The message is delivered to
// the master's listener at once (the statement commits by itself), and
// the master acts on it in the handler SetControl set. A reason longer
// than 4000 bytes is cut. It returns an error wrapping ErrMasterInactive
// when the master is not active (or does not exist).
func (p *PG) SendControl(c Control) error {
	c = cutReason(c)
	payload, err := json.Marshal(c)
	if err != nil {
		return err
	}
	ctx, cancel := p.opCtx()
	defer cancel()
	tag, err := p.pool.Exec(ctx, "SELECT pg_notify($1, $2) FROM masters WHERE id = $3 AND (data->>'Active')::boolean",
		pgControlChannel, string(payload), c.To)
	if err != nil {
		return fmt.Errorf("send %s: %w", c, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("send %s: %w", c, ErrMasterInactive)
	}
	return nil
}

// SetControl makes fn the handler of the control messages sent to this
// store's master (the one its first EnsureMaster named); nil drops them.
// fn runs on the goroutine that receives the other masters' events: it
// must not block. Messages are received only by a store opened with
// Options.Events (whose listener receives them).
func (p *PG) SetControl(fn func(Control)) {
	if fn == nil {
		p.control.Store(nil)
		return
	}
	p.control.Store(&fn)
}

// receiveControl hands a control notification to the handler, when it is
// for this store's master.
func (p *PG) receiveControl(payload string) {
	var c Control
	if err := json.Unmarshal([]byte(payload), &c); err != nil {
		p.log.Error("bad control notification", "err", err)
		return
	}
	if c.To == 0 || c.To != p.selfID.Load() {
		return
	}
	fn := p.control.Load()
	if fn == nil {
		p.log.Warn("control message dropped: this master does not take them (yet)", "control", c.String())
		return
	}
	(*fn)(c)
}
