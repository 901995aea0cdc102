package reporter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gbb-ci/gbb/pkg/config"
	"github.com/gbb-ci/gbb/pkg/store"
)

// Config configures a Dispatcher.
type Config struct {
	Store store.Store
	// Secrets gives the values of %(secret:NAME)s; nil means there are
	// no secrets providers (rendering a secret fails the delivery).
	Secrets func(name string) (string, error)
	Log     *slog.Logger // nil means discard
	// Title is the master's title, for the messages that name it (mail
	// subjects); empty means "Buildbot", as buildbot's default.
	Title string

	// MinBackoff and MaxBackoff bound the wait between tries of a failing
	// delivery, doubled at each try with jitter; zero means 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// Timeout bounds one try; zero means 30s.
	Timeout time.Duration
	// Poll is how often a reporter looks at the outbox when not woken
	// (a safety net: Wake is the usual way); zero means 5s.
	Poll time.Duration
	// Concurrency bounds the deliveries one reporter has under way at
	// once, each for a different key (laneKey); zero means 4.
	Concurrency int
	// OnTry, when set, is told of each try of a delivery: the reporter's
	// name and the try's error (nil: delivered); for the metrics. Nil
	// means nobody.
	OnTry func(reporter string, err error)
}

// Dispatcher delivers the store's outbox to the configured reporters:
// each reporter in a goroutine of its own, in outbox order, retrying with
// backoff, so a slow or failing endpoint slows nobody else.
type Dispatcher struct {
	cfg      Config
	log      *slog.Logger
	redactor redactor

	mu      sync.Mutex
	want    []config.Reporter    // guarded by mu; the configured reporters
	running map[string]*runner   // guarded by mu; by name, while Run runs
	ctx     context.Context      // guarded by mu; Run's, nil when not running
	wg      sync.WaitGroup       // the runners
	site    atomic.Pointer[site] // read by the runners without mu
}

// runner is one reporter's goroutines: a reader that hands the outbox's
// entries to lanes, one lane per key (see laneKey), each delivering its
// entries in order.
type runner struct {
	rc     config.Reporter
	cancel context.CancelFunc
	done   chan struct{} // closed when the reader and every lane have returned
	// after is the done of the runner this one replaces (nil for none):
	// it starts once that one has finished its delivery under way.
	after <-chan struct{}
	// sem bounds the deliveries under way at once (Concurrency).
	sem chan struct{}

	wakeMu sync.Mutex
	wakeCh chan struct{} // guarded by wakeMu: closed and replaced by wake
}

// wakeChan is closed at the next wake: take it before looking at what a
// wake would change, then wait on it.
func (r *runner) wakeChan() <-chan struct{} {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	return r.wakeCh
}

// wake wakes every goroutine of r waiting on a wakeChan.
func (r *runner) wake() {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	close(r.wakeCh)
	r.wakeCh = make(chan struct{})
}

// New makes a dispatcher; it starts nothing until Run.
func New(cfg Config) *Dispatcher {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 5 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	d := &Dispatcher{cfg: cfg, log: cfg.Log, running: map[string]*runner{}}
	d.site.Store(&site{})
	return d
}

// SetConfig sets the reporters, the workers (for WorkerMissing reports)
// and buildbot_url. While Run runs, removed and changed reporters stop
// (a delivery under way is cancelled and stays pending) and new ones
// start. It returns why reporters could not be made, joined; the others
// run. The store's outbox is on while there are reporters.
func (d *Dispatcher) SetConfig(reporters []config.Reporter, workers []config.Worker, buildbotURL string) error {
	if buildbotURL != "" && !strings.HasSuffix(buildbotURL, "/") {
		buildbotURL += "/"
	}
	ws := map[string]config.Worker{}
	for _, w := range workers {
		ws[w.Name] = w
	}
	// Each reporter's cursor exists before the outbox is on: a new
	// reporter reports every event from now on, none before.
	var errs []error
	for _, rc := range reporters {
		if _, err := d.cfg.Store.OutboxCursor(rc.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	d.mu.Lock()
	d.site.Store(&site{url: buildbotURL, workers: ws})
	d.want = reporters
	if len(reporters) > 0 {
		d.cfg.Store.SetOutbox(d.Wake)
	} else {
		d.cfg.Store.SetOutbox(nil)
	}
	var err error
	if d.ctx != nil {
		err = d.applyLocked()
	}
	d.mu.Unlock()
	// A removed reporter's cursor goes now: its pending deliveries are
	// not tried again, and if it comes back it reports from then on.
	names := make([]string, 0, len(reporters))
	for _, rc := range reporters {
		names = append(names, rc.Name)
	}
	if perr := d.cfg.Store.PruneOutbox(names); perr != nil {
		err = errors.Join(err, perr)
	}
	return err
}

// Wake tells every reporter that the outbox has new entries. It does not
// block.
func (d *Dispatcher) Wake() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.running {
		r.wake()
	}
}

// Run delivers until ctx is done, then stops every reporter and returns.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.mu.Lock()
	d.ctx = ctx
	if err := d.applyLocked(); err != nil {
		d.log.Error("reporters", "err", err)
	}
	d.mu.Unlock()
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			d.mu.Lock()
			d.ctx = nil
			for name, r := range d.running {
				r.cancel()
				delete(d.running, name)
			}
			d.mu.Unlock()
			d.wg.Wait()
			return nil
		case <-prune.C:
			d.mu.Lock()
			names := make([]string, 0, len(d.want))
			for _, rc := range d.want {
				names = append(names, rc.Name)
			}
			d.mu.Unlock()
			if err := d.cfg.Store.PruneOutbox(names); err != nil {
				d.log.Error("prune the outbox", "err", err)
			}
		}
	}
}

// applyLocked starts and stops runners to match d.want. d.mu is held and
// Run runs.
func (d *Dispatcher) applyLocked() error {
	keep := map[string]config.Reporter{}
	stopped := map[string]chan struct{}{}
	for _, rc := range d.want {
		keep[rc.Name] = rc
	}
	for name, r := range d.running {
		if rc, ok := keep[name]; ok && sameReporter(rc, r.rc) {
			r.rc = rc // its Line, for what names it
			continue
		}
		// Its deliveries under way finish (within Timeout) and are
		// recorded; the runner that replaces it starts after (r.done).
		r.cancel()
		delete(d.running, name)
		stopped[name] = r.done
		d.log.Info("reporter stopped", "reporter", name)
	}
	var errs []error
	for _, rc := range d.want {
		if _, ok := d.running[rc.Name]; ok {
			continue
		}
		s, err := d.newSender(rc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ctx, cancel := context.WithCancel(d.ctx)
		r := &runner{rc: rc, cancel: cancel, done: make(chan struct{}), after: stopped[rc.Name],
			sem: make(chan struct{}, d.cfg.Concurrency), wakeCh: make(chan struct{})}
		d.running[rc.Name] = r
		d.log.Info("reporter started", "reporter", rc.Name, "type", rc.Type)
		runCtx := d.ctx
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer close(r.done)
			d.run(runCtx, ctx, r, s)
		}()
	}
	return errors.Join(errs...)
}

// sameReporter reports whether a and b behave the same: they differ at
// most in where the config has them (Line), so a reconfig that only
// moves lines does not restart a reporter.
func sameReporter(a, b config.Reporter) bool {
	a.Line, b.Line = 0, 0
	return reflect.DeepEqual(a, b)
}

// newSender makes rc's Sender, with an HTTP client of its own that
// honours verify_ssl.
func (d *Dispatcher) newSender(rc config.Reporter) (Sender, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = d.cfg.Timeout
	if !rc.VerifySSL {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // the user asked: verify_ssl = false
	}
	deps := Deps{
		HTTP:  &http.Client{Transport: tr, Timeout: d.cfg.Timeout},
		Log:   d.log.With("reporter", rc.Name),
		Title: d.cfg.Title,
	}
	return newSender(rc, deps)
}

// maxInFlight bounds the outbox entries a reporter has read and not
// finished (delivered, given up, superseded or skipped).
const maxInFlight = 256

// laneKey is the key of outbox entry e for reporter rc: entries of one
// key are delivered in outbox order, one at a time; entries of different
// keys independently. A status kind's order matters per commit and
// context: its key is the build's source stamps (repository and
// revision), so a build's start and end, and every build of the same
// commits, share a lane. The other kinds' order matters per build (and
// a missing worker's report is its own).
func (d *Dispatcher) laneKey(rc config.Reporter, e store.OutboxEntry) string {
	if e.Event == store.OutboxWorkerMissing {
		return "worker\x00" + e.Worker
	}
	build := fmt.Sprintf("build\x00%d", e.BuildID)
	if !rc.IsStatus() {
		return build
	}
	st := d.cfg.Store
	b, err := st.Build(e.BuildID)
	if err != nil || b.BuildRequestID == 0 {
		return build
	}
	br, err := st.BuildRequest(b.BuildRequestID)
	if err != nil {
		return build
	}
	bs, err := st.Buildset(br.BuildsetID)
	if err != nil {
		return build
	}
	var stamps []string
	for _, ss := range bs.SourceStamps {
		if ss.Revision != "" {
			stamps = append(stamps, ss.Repository+"\x00"+ss.Revision)
		}
	}
	if len(stamps) == 0 {
		return build
	}
	slices.Sort(stamps)
	return "commits\x00" + strings.Join(stamps, "\x00")
}

// run delivers the outbox to one reporter from its cursor: a reader hands
// each entry to its key's lane (laneKey); each lane delivers its entries
// in order, at most Concurrency of them at once in all. The cursor moves
// past an entry only once every entry before it is finished, so a restart
// resumes every delivery not finished. runCtx is Run's: a delivery under
// way is cut only when it is done; ctx is the runner's.
func (d *Dispatcher) run(runCtx, ctx context.Context, r *runner, s Sender) {
	log := d.log.With("reporter", r.rc.Name)
	if r.after != nil {
		select {
		case <-r.after:
		case <-ctx.Done():
			return
		}
	}
	var cur int64
	for {
		var err error
		if cur, err = d.cfg.Store.OutboxCursor(r.rc.Name); err == nil {
			break
		}
		log.Error("read the outbox cursor", "err", err)
		if !d.sleep(ctx, r.wakeChan(), d.cfg.MinBackoff) {
			return
		}
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lanes    = map[string][]store.OutboxEntry{} // guarded by mu: each lane's entries not finished
		finished = make(chan int64, maxInFlight)
		inFlight = map[int64]bool{} // the reader's: entries read and not finished
		read     = cur              // the last entry read
		saved    = cur              // the cursor as stored
	)
	defer wg.Wait()
	lane := func(key string) {
		for {
			mu.Lock()
			e := lanes[key][0]
			mu.Unlock()
			if !d.deliver(runCtx, ctx, r, s, e, log) {
				return // stopped: what is not finished stays pending
			}
			mu.Lock()
			lanes[key] = lanes[key][1:]
			last := len(lanes[key]) == 0
			if last {
				delete(lanes, key)
			}
			mu.Unlock()
			finished <- e.Seq // never blocks: at most maxInFlight entries
			if last {
				return
			}
		}
	}
	for {
		wake := r.wakeChan()
		// What is finished moves the cursor up to the first entry that
		// is not.
	drain:
		for {
			select {
			case seq := <-finished:
				delete(inFlight, seq)
			default:
				break drain
			}
		}
		low := read
		for seq := range inFlight {
			low = min(low, seq-1)
		}
		if low > saved && ctx.Err() == nil { // a stopped reporter may have been removed: its cursor is gone
			if err := d.cfg.Store.SkipOutbox(r.rc.Name, low); err != nil {
				log.Error("move the outbox cursor", "err", err)
			} else {
				saved = low
			}
		}
		var entries []store.OutboxEntry
		if room := maxInFlight - len(inFlight); room > 0 {
			var err error
			if entries, err = d.cfg.Store.OutboxAfter(read, min(room, 64)); err != nil {
				log.Error("read the outbox", "err", err)
			}
		}
		for _, e := range entries {
			key := d.laneKey(r.rc, e)
			inFlight[e.Seq], read = true, e.Seq
			mu.Lock()
			lanes[key] = append(lanes[key], e)
			start := len(lanes[key]) == 1
			mu.Unlock()
			if start {
				wg.Go(func() { lane(key) })
			}
		}
		if len(entries) > 0 {
			continue
		}
		t := time.NewTimer(d.cfg.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case seq := <-finished:
			delete(inFlight, seq)
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// sleep waits for dt, wake or ctx; false when ctx is done.
func (d *Dispatcher) sleep(ctx context.Context, wake <-chan struct{}, dt time.Duration) bool {
	t := time.NewTimer(dt)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-wake:
	case <-t.C:
	}
	return true
}

// deliver hands outbox entry e to one reporter until it is delivered,
// superseded or given up, recording each try, or finds that it was (a
// restart after the record and before the cursor moved). It returns false
// when ctx is done first (the delivery stays pending, resumed at the next
// start). A try under way when ctx is done runs to its end (within
// Timeout) and is recorded, so that a reconfig does not send it again;
// only runCtx (the dispatcher's) cuts it, and then its result is unknown:
// it stays pending and is sent again (at least once).
func (d *Dispatcher) deliver(runCtx, ctx context.Context, r *runner, s Sender, e store.OutboxEntry, log *slog.Logger) bool {
	st := d.cfg.Store
	rc := r.rc
	site := *d.site.Load()
	rep, err := d.loadReport(e, site)
	for err != nil {
		if errors.Is(err, errGone) {
			log.Info("nothing to report: gone from the store", "entry", e.Seq, "err", err)
			return true
		}
		log.Error("read a report", "entry", e.Seq, "err", err)
		if !d.sleep(ctx, nil, d.cfg.MinBackoff) {
			return false
		}
		rep, err = d.loadReport(e, site)
	}
	if !wants(rc, rep) {
		return true
	}
	dl, found, err := st.Delivery(rc.Name, e.BuildID, e.Seq)
	if err != nil {
		log.Error("read a delivery", "entry", e.Seq, "err", err)
	}
	if found && dl.State != store.DeliveryPending {
		return true // finished before a restart
	}
	if !found {
		now := time.Now().UTC()
		dl = store.Delivery{Reporter: rc.Name, Seq: e.Seq, BuildID: e.BuildID, Event: e.Event, Worker: e.Worker,
			State: store.DeliveryPending, CreatedAt: now, UpdatedAt: now}
	}
	log = log.With("event", e.Event, "build", e.BuildID, "entry", e.Seq)
	// save records dl; the runner moves the cursor once the entries
	// before it are finished too.
	save := func(stop context.Context) bool {
		for {
			err := st.SaveDelivery(dl, false)
			if err == nil {
				return true
			}
			log.Error("record a delivery", "err", err)
			if !d.sleep(stop, nil, d.cfg.MinBackoff) {
				return false
			}
		}
	}
	if !found {
		// Shown pending from now, while a slow endpoint holds the first try.
		if !save(ctx) {
			return false
		}
	}
	for {
		wake := r.wakeChan()
		if e.Event == store.OutboxStarted {
			// The forge never ends on an older state: once the build's
			// Finished is in the outbox, its Started is not sent.
			if _, fin, err := st.OutboxFinishedSeq(e.BuildID); err == nil && fin {
				dl.State, dl.UpdatedAt, dl.NextAt = store.DeliverySuperseded, time.Now().UTC(), time.Time{}
				log.Info("report superseded by the build's end")
				return save(ctx)
			}
		}
		if wait := time.Until(dl.NextAt); wait > 0 {
			// A retry waits in its lane: other keys go on.
			if !d.sleep(ctx, wake, wait) {
				return false
			}
			continue // woken: look for a Finished again
		}
		select {
		case r.sem <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		actx, cancel := context.WithTimeout(runCtx, d.cfg.Timeout)
		err := s.Send(actx, rep)
		cancel()
		<-r.sem
		if err != nil && runCtx.Err() != nil {
			return false // cut by the dispatcher's stop: the result is unknown, it stays pending
		}
		if d.cfg.OnTry != nil {
			d.cfg.OnTry(rc.Name, err)
		}
		now := time.Now().UTC()
		dl.Attempts++
		dl.UpdatedAt = now
		if err == nil {
			dl.State, dl.DeliveredAt, dl.NextAt = store.DeliveryDelivered, now, time.Time{}
			if dl.LastError != "" {
				dl.LastError = "before: " + strings.TrimPrefix(dl.LastError, "before: ")
			}
			log.Debug("report delivered", "attempts", dl.Attempts)
			// Recorded even while stopping: it must not be sent again.
			return save(runCtx) && ctx.Err() == nil
		}
		dl.LastError = d.describe(err, rc)
		if IsPermanent(err) {
			dl.State, dl.NextAt = store.DeliveryFailed, time.Time{}
			log.Warn("report refused: given up", "attempts", dl.Attempts, "err", dl.LastError)
			return save(runCtx) && ctx.Err() == nil
		}
		wait := d.backoff(dl.Attempts)
		var ra *RetryAfterError
		if errors.As(err, &ra) && ra.After > 0 {
			wait = ra.After
		}
		if now.Add(wait).After(dl.CreatedAt.Add(rc.RetryFor)) {
			dl.State, dl.NextAt = store.DeliveryFailed, time.Time{}
			dl.LastError = fmt.Sprintf("gave up after %d tries over %s: %s", dl.Attempts, now.Sub(dl.CreatedAt).Round(time.Second), dl.LastError)
			log.Warn("report given up: retry_for ran out", "attempts", dl.Attempts, "err", dl.LastError)
			return save(runCtx) && ctx.Err() == nil
		}
		dl.NextAt = now.Add(wait)
		log.Info("report failed: will retry", "attempts", dl.Attempts, "in", wait.Round(time.Millisecond), "err", dl.LastError)
		if !save(ctx) {
			return false
		}
	}
}

// backoff is the wait after the n-th failed try: MinBackoff doubled n-1
// times, at most MaxBackoff, less up to half of it at random (jitter, so
// that reporters failing together do not retry together).
func (d *Dispatcher) backoff(n int) time.Duration {
	w := d.cfg.MinBackoff
	for i := 1; i < n && w < d.cfg.MaxBackoff; i++ {
		w *= 2
	}
	w = min(w, d.cfg.MaxBackoff)
	return w - rand.N(w/2+1)
}

// describe is err as recorded and logged: every error passes here before
// it is stored or logged. It holds no URL an *url.Error names (a webhook
// URL is often a secret), and no secret rendered so far nor token,
// password, header or URL of rc written in the config as it is, in any
// of the forms an endpoint may echo (scrubText: base64 of basic auth and
// of SMTP's AUTH PLAIN with rc's users, URL-escaped, a prefix at a cut
// end); it is cut to its length only after.
func (d *Dispatcher) describe(err error, rc config.Reporter) string {
	s := err.Error()
	var ue *url.Error
	if errors.As(err, &ue) && ue.URL != "" {
		s = strings.ReplaceAll(s, ue.URL, "<url>")
		if u, perr := url.Parse(ue.URL); perr == nil {
			s = strings.ReplaceAll(s, u.Redacted(), "<url>")
		}
	}
	secrets := d.redactor.secrets()
	for _, v := range []string{rc.Token, rc.Password, rc.ClientSecret, rc.SMTPPassword, rc.BearerToken, rc.URL} {
		if !strings.Contains(v, "%(") {
			secrets = append(secrets, v)
		}
	}
	for _, v := range rc.Headers {
		if !strings.Contains(v, "%(") {
			secrets = append(secrets, v)
		}
	}
	return scrubText(s, secrets, []string{rc.User, rc.ClientID, rc.SMTPUser})
}
