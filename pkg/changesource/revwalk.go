package changesource

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// clockSlop is how far back, past the oldest new commit, the walk keeps
// marking old commits, to be right despite clocks that were a little off
// when the commits were made.
const clockSlop = 24 * time.Hour

// newCommits returns the commits reachable from tip and from none of known,
// oldest first (parents before children, then by commit time): what
// `git log --reverse tip ^known...` lists. Known revisions missing from s,
// and their ancestors missing from s, are ignored.
//
// It walks from all of them at once, newest commit first, marking what
// known reaches as old, and stops once only old commits are left to walk
// and they are older than every new one found, as git's rev-list does.
func newCommits(ctx context.Context, s storer.EncodedObjectStorer, tip plumbing.Hash, known []plumbing.Hash) ([]*object.Commit, error) {
	w := &walk{s: s, commits: map[plumbing.Hash]*object.Commit{}, old: map[plumbing.Hash]bool{}}
	if err := w.push(tip, false); err != nil {
		return nil, err
	}
	for _, h := range known {
		err := w.push(h, true)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
	}
	var found []*object.Commit // newest first
	var oldest time.Time
	for w.q.Len() > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if w.onlyOld() && (len(found) == 0 || w.q[0].Committer.When.Before(oldest.Add(-clockSlop))) {
			break
		}
		c := heap.Pop(&w.q).(*object.Commit)
		isOld := w.old[c.Hash]
		if !isOld {
			found = append(found, c)
			if oldest.IsZero() || c.Committer.When.Before(oldest) {
				oldest = c.Committer.When
			}
		}
		for _, ph := range c.ParentHashes {
			err := w.push(ph, isOld)
			if isOld && errors.Is(err, plumbing.ErrObjectNotFound) {
				continue // known history the mirror lacks: it only marks
			}
			if err != nil {
				return nil, err
			}
		}
	}

	// Drop what turned out to be old, and order the rest parents first.
	set := map[plumbing.Hash]bool{}
	for _, c := range found {
		if !w.old[c.Hash] {
			set[c.Hash] = true
		}
	}
	waiting := map[plumbing.Hash]int{} // new parents not yet listed
	children := map[plumbing.Hash][]*object.Commit{}
	var ready commitHeap
	for _, c := range found {
		if !set[c.Hash] {
			continue
		}
		for _, ph := range c.ParentHashes {
			if set[ph] {
				waiting[c.Hash]++
				children[ph] = append(children[ph], c)
			}
		}
		if waiting[c.Hash] == 0 {
			ready.commits = append(ready.commits, c)
		}
	}
	heap.Init(&ready)
	out := make([]*object.Commit, 0, len(set))
	for ready.Len() > 0 {
		c := heap.Pop(&ready).(*object.Commit)
		out = append(out, c)
		for _, child := range children[c.Hash] {
			if waiting[child.Hash]--; waiting[child.Hash] == 0 {
				heap.Push(&ready, child)
			}
		}
	}
	return out, nil
}

type walk struct {
	s       storer.EncodedObjectStorer
	commits map[plumbing.Hash]*object.Commit // every commit queued so far
	old     map[plumbing.Hash]bool           // reachable from a known revision
	q       walkQueue
}

// push queues commit h unless it was queued before; old marks it and the
// ancestors of it already walked as old.
func (w *walk) push(h plumbing.Hash, old bool) error {
	if old {
		w.markOld(h)
	}
	if _, ok := w.commits[h]; ok {
		return nil
	}
	c, err := object.GetCommit(w.s, h)
	if err != nil {
		return err
	}
	w.commits[h] = c
	heap.Push(&w.q, c)
	return nil
}

// markOld marks h and the ancestors of it already walked as old.
func (w *walk) markOld(h plumbing.Hash) {
	stack := []plumbing.Hash{h}
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if w.old[h] {
			continue
		}
		w.old[h] = true
		if c, ok := w.commits[h]; ok {
			stack = append(stack, c.ParentHashes...)
		}
	}
}

// onlyOld reports whether every queued commit is old.
func (w *walk) onlyOld() bool {
	for _, c := range w.q {
		if !w.old[c.Hash] {
			return false
		}
	}
	return true
}

// walkQueue is a heap of commits, newest (by commit time) first.
type walkQueue []*object.Commit

func (q walkQueue) Len() int { return len(q) }
func (q walkQueue) Less(i, j int) bool {
	return q[i].Committer.When.After(q[j].Committer.When)
}
func (q walkQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *walkQueue) Push(x any)   { *q = append(*q, x.(*object.Commit)) }
func (q *walkQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	*q = old[:len(old)-1]
	return c
}

// commitHeap is a heap of commits, oldest (by commit time) first, then by
// hash so that the order is always the same.
type commitHeap struct {
	commits []*object.Commit
}

func (h commitHeap) Len() int { return len(h.commits) }
func (h commitHeap) Less(i, j int) bool {
	a, b := h.commits[i], h.commits[j]
	if !a.Committer.When.Equal(b.Committer.When) {
		return a.Committer.When.Before(b.Committer.When)
	}
	return a.Hash.String() < b.Hash.String()
}
func (h commitHeap) Swap(i, j int) { h.commits[i], h.commits[j] = h.commits[j], h.commits[i] }
func (h *commitHeap) Push(x any)   { h.commits = append(h.commits, x.(*object.Commit)) }
func (h *commitHeap) Pop() any {
	c := h.commits[len(h.commits)-1]
	h.commits = h.commits[:len(h.commits)-1]
	return c
}
func signature(s object.Signature) string {
	return fmt.Sprintf("%s <%s>", s.Name, s.Email)
}

// changedFiles lists the paths that c changes from its first parent, sorted;
// for a root commit, every file.
func changedFiles(c *object.Commit) ([]string, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, err
	}
	var parent *object.Tree
	if c.NumParents() > 0 {
		pc, err := c.Parent(0)
		if err != nil {
			return nil, err
		}
		if parent, err = pc.Tree(); err != nil {
			return nil, err
		}
	}
	diff, err := object.DiffTree(parent, tree)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, d := range diff {
		for _, name := range []string{d.From.Name, d.To.Name} {
			if name != "" && !slices.Contains(files, name) {
				files = append(files, name)
			}
		}
	}
	slices.Sort(files)
	return files, nil
}
