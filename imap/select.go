package imap

import (
	"errors"
	"slices"
	"sort"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/mailbox"
)

// The selected state: SELECT/EXAMINE, and keeping the client's view of
// the folder up to date (NOOP, after each command, IDLE).

func (s *session) Select(name string, options *goimap.SelectOptions) (*goimap.SelectData, error) {
	s.unselect()
	name, err := checkName(name)
	if err != nil {
		return nil, err
	}
	snap, err := s.folders.Sync(s.ctx, name)
	if err != nil {
		return nil, s.fail("select", err)
	}
	s.name, s.readOnly, s.view = name, options.ReadOnly, snap
	if s.readOnly {
		s.recent = recentSet{readOnly: true, from: s.srv.recent.mark(s.recentKey(), snap.UIDValidity)}
	} else {
		s.claimRecent(snap)
	}
	s.keywords = nil
	for _, m := range snap.Messages {
		s.keywords, _ = keywordsOf(s.keywords, m.Flags)
	}
	flags := mailboxFlags(s.keywords)
	perm := []goimap.Flag{}
	if !s.readOnly {
		perm = append(slices.Clone(flags), goimap.FlagWildcard)
	}
	var firstUnseen uint32
	for i, m := range snap.Messages {
		if !hasFlag(m.Flags, mailbox.FlagSeen) {
			firstUnseen = uint32(i + 1)
			break
		}
	}
	return &goimap.SelectData{
		Flags:             flags,
		PermanentFlags:    perm,
		NumMessages:       uint32(len(snap.Messages)),
		FirstUnseenSeqNum: firstUnseen,
		NumRecent:         s.numRecent(),
		UIDNext:           goimap.UID(snap.UIDNext),
		UIDValidity:       snap.UIDValidity,
	}, nil
}

func (s *session) unselect() {
	s.name, s.readOnly, s.view = "", false, nil
	s.reported, s.keywords, s.searchRes = nil, nil, nil
	s.recent = recentSet{}
}

// Idle reports changes as they happen until stop is closed (the client
// said DONE): at once for changes made through this process
// (Folders.Watch), within PollInterval for files other programs changed.
func (s *session) Idle(w *updateWriter, stop <-chan struct{}) error {
	if s.name == "" {
		select {
		case <-stop:
		case <-s.ctx.Done():
		}
		return nil
	}
	t := time.NewTicker(s.srv.opts.PollInterval)
	defer t.Stop()
	for {
		changed := s.folders.Watch(s.name)
		if err := w.batch(func() error { return s.update(w, true) }); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-s.ctx.Done():
			return nil
		case <-changed:
		case <-t.C:
		}
	}
}

// update syncs the selected folder and tells the client the difference
// from its view: EXPUNGE for messages gone (only where allowed; otherwise
// the old view stays, whole, until a command that allows them), FLAGS for
// new keywords, EXISTS for new messages and FETCH FLAGS for changed ones.
// Only write errors are returned: a failing store must not end the
// connection (the library closes it on an error from Poll).
func (s *session) update(w *updateWriter, allowExpunge bool) error {
	if s.name == "" {
		return nil
	}
	snap, err := s.folders.Sync(s.ctx, s.name)
	if errors.Is(err, mailbox.ErrNoFolder) {
		// Deleted or renamed by someone else: its messages are gone.
		snap = &mailbox.Snapshot{UIDValidity: s.view.UIDValidity, UIDNext: s.view.UIDNext}
	} else if err != nil {
		if s.ctx.Err() == nil {
			s.log.Error("sync failed", "folder", s.name, "err", err)
		}
		return nil
	}
	if snap == s.view {
		return nil
	}
	if snap.UIDValidity != s.view.UIDValidity {
		// RFC 9051 §2.3.1.1: the client must forget all it knows.
		s.log.Warn("UIDVALIDITY changed; disconnecting", "folder", s.name)
		s.bye("UIDVALIDITY changed, please reconnect")
		return nil
	}
	return s.diff(w, snap, allowExpunge)
}

// diff writes the difference between the view and snap, and makes snap
// the view.
func (s *session) diff(w *updateWriter, snap *mailbox.Snapshot, allowExpunge bool) error {
	old, cur := s.view.Messages, snap.Messages
	var (
		expunged []uint32 // old sequence numbers, ascending
		changed  []int    // indexes into cur: flags to report
		modified []int    // indexes into cur: flags changed, reported or not
		kept     = 0
		anomaly  = false
	)
	j := 0
	for i, m := range old {
		for j < len(cur) && cur[j].UID < m.UID {
			anomaly = true // a UID below one already seen: never shown
			j++
		}
		if j < len(cur) && cur[j].UID == m.UID {
			if cur[j].ModSeq != m.ModSeq {
				modified = append(modified, j)
				if s.reported[m.UID] != cur[j].ModSeq {
					changed = append(changed, j)
				}
			}
			kept++
			j++
			continue
		}
		expunged = append(expunged, uint32(i+1))
	}
	if len(expunged) > 0 && !allowExpunge {
		return nil
	}
	if anomaly {
		return s.diff(w, s.dropUnseenBelow(snap, old), allowExpunge)
	}
	for k := len(expunged) - 1; k >= 0; k-- {
		if err := w.WriteExpunge(expunged[k]); err != nil {
			return err
		}
	}
	added := false // a keyword new to the client, even from its own STORE
	for _, k := range modified {
		var a bool
		s.keywords, a = keywordsOf(s.keywords, cur[k].Flags)
		added = added || a
	}
	for _, m := range cur[j:] {
		var a bool
		s.keywords, a = keywordsOf(s.keywords, m.Flags)
		added = added || a
	}
	if added {
		if err := w.WriteMailboxFlags(mailboxFlags(s.keywords), !s.readOnly); err != nil {
			return err
		}
	}
	s.view = snap
	s.reported = nil
	if len(cur) != kept {
		if err := w.WriteNumMessages(uint32(len(cur))); err != nil {
			return err
		}
		if len(cur) > kept {
			s.claimRecent(snap)
			if err := w.WriteNumRecent(s.numRecent()); err != nil {
				return err
			}
		}
	}
	for _, k := range changed {
		m := cur[k]
		if err := w.WriteMessageFlags(uint32(k+1), goimap.UID(m.UID), s.flagsOf(m)); err != nil {
			return err
		}
	}
	return nil
}

// dropUnseenBelow handles a snapshot holding a message whose UID is below
// one the client already has (a store bug; UIDs must only grow): such a
// message cannot be given a sequence number, so it is left out.
func (s *session) dropUnseenBelow(snap *mailbox.Snapshot, old []mailbox.Message) *mailbox.Snapshot {
	s.log.Error("folder snapshot has a new message below a known UID; leaving it out", "folder", s.name)
	known := map[uint32]bool{}
	for _, m := range old {
		known[m.UID] = true
	}
	maxOld := old[len(old)-1].UID
	c := *snap
	c.Messages = slices.DeleteFunc(slices.Clone(snap.Messages), func(m mailbox.Message) bool {
		return m.UID < maxOld && !known[m.UID]
	})
	return &c
}

// remove takes messages out of the view (after EXPUNGE or MOVE by this
// session) and writes their EXPUNGE responses, highest first. The view
// becomes a private copy until the next update replaces it.
func (s *session) remove(gone func(uid uint32) bool, write func(seq uint32) error) error {
	msgs := s.view.Messages
	var seqs []uint32
	for i, m := range msgs {
		if gone(m.UID) {
			seqs = append(seqs, uint32(i+1))
		}
	}
	if len(seqs) == 0 {
		return nil
	}
	c := *s.view
	c.Messages = slices.DeleteFunc(slices.Clone(msgs), func(m mailbox.Message) bool { return gone(m.UID) })
	s.view = &c
	for k := len(seqs) - 1; k >= 0; k-- {
		if err := write(seqs[k]); err != nil {
			return err
		}
	}
	return nil
}

// indexOf finds uid in a snapshot's messages (sorted by UID).
func indexOf(msgs []mailbox.Message, uid uint32) (int, bool) {
	i := sort.Search(len(msgs), func(i int) bool { return msgs[i].UID >= uid })
	return i, i < len(msgs) && msgs[i].UID == uid
}

// resolve turns a sequence or UID set from the client into indexes of
// the view, ascending and without duplicates. "*" is the last message;
// "$" is the saved search result (RFC 5182). A sequence number beyond the
// view is an error (RFC 9051 §6.4.4); UIDs that are gone are skipped.
// Ranges are merged first, so that a set repeating "1:*" a thousand times
// costs no more than one.
func (s *session) resolve(numSet goimap.NumSet) ([]int, error) {
	msgs := s.view.Messages
	n := uint32(len(msgs))
	if goimap.IsSearchRes(numSet) {
		var out []int
		for _, uid := range s.searchRes {
			if i, ok := indexOf(msgs, uid); ok {
				out = append(out, i)
			}
		}
		slices.Sort(out)
		return slices.Compact(out), nil
	}
	var spans [][2]int // index ranges, inclusive
	switch set := numSet.(type) {
	case goimap.SeqSet:
		for _, r := range set {
			if n == 0 && (r.Start == 0 || r.Stop == 0) {
				continue
			}
			start, stop := normRange(r.Start, r.Stop, n)
			if stop > n || start == 0 {
				return nil, bad("Invalid message sequence number")
			}
			spans = append(spans, [2]int{int(start - 1), int(stop - 1)})
		}
	case goimap.UIDSet:
		if n == 0 {
			return nil, nil
		}
		maxUID := msgs[n-1].UID
		for _, r := range set {
			start, stop := normRange(uint32(r.Start), uint32(r.Stop), maxUID)
			i, _ := indexOf(msgs, start)
			j, found := indexOf(msgs, stop)
			if !found {
				j-- // the last message below stop
			}
			if i <= j {
				spans = append(spans, [2]int{i, j})
			}
		}
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	total, next := 0, 0
	for _, sp := range spans {
		total += max(0, sp[1]+1-max(sp[0], next))
		next = max(next, sp[1]+1)
	}
	if total == 0 {
		return nil, nil
	}
	out := make([]int, 0, total)
	next = 0 // first index not yet in out
	for _, sp := range spans {
		for k := max(sp[0], next); k <= sp[1]; k++ {
			out = append(out, k)
		}
		next = max(next, sp[1]+1)
	}
	return out, nil
}

// normRange is a range of a sequence or UID set with "*" (0) read as
// last, the largest number in use, and its ends in order: "4:2" is "2:4"
// (RFC 9051 §9, seq-range).
func normRange(start, stop, last uint32) (uint32, uint32) {
	if start == 0 {
		start = last
	}
	if stop == 0 {
		stop = last
	}
	if start > stop {
		start, stop = stop, start
	}
	return start, stop
}
