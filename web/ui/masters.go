package ui

import (
	"net/http"
	"time"

	"github.com/gbb-ci/gbb/pkg/store"
)

// mastersPage lists the masters sharing the store: with bbolt, this one;
// with PostgreSQL, every master that ever ran on it.
type mastersPage struct {
	pageBase
	Masters []masterRow
}

type masterRow struct {
	ID       int64
	Name     string
	Active   bool
	Leader   bool // runs the schedulers, change sources and reporters
	This     bool // the master serving this page
	LastSeen time.Time
	Ago      string // how long since LastSeen, as fmtDuration prints it
	Workers  int    // connected to it
	Running  int    // its builds running
}

func (s *Server) mastersPage(w http.ResponseWriter, r *http.Request) {
	page := &mastersPage{pageBase: s.base(r, "masters", "Masters", "masters/*/*")}
	masters, err := s.cfg.Store.Masters()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	workers, err := s.cfg.Store.Workers()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	running, err := s.cfg.Store.Builds(store.BuildFilter{Complete: new(false)})
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	connected := map[int64]int{}
	for _, wk := range workers {
		for _, id := range wk.ConnectedTo {
			connected[id]++
		}
	}
	builds := map[int64]int{}
	for _, b := range running {
		builds[b.MasterID]++
	}
	leader, this := s.api.Leader(), s.api.MasterID()
	now := time.Now()
	for _, m := range masters {
		page.Masters = append(page.Masters, masterRow{
			ID: m.ID, Name: m.Name, Active: m.Active, Leader: m.Active && m.ID == leader, This: m.ID == this,
			LastSeen: m.LastSeen, Ago: fmtDuration(now.Sub(m.LastSeen)),
			Workers: connected[m.ID], Running: builds[m.ID],
		})
	}
	s.render(w, http.StatusOK, "masters.html", page)
}
