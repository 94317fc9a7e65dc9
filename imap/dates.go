package imap

import (
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/mailbox"
)

// Internal dates from a mailbox.LazyDates store are zero in the view
// until read: FETCH INTERNALDATE and SEARCH SINCE/BEFORE/ON ask the store
// for them, cacheChunk messages at a time.

// internalDates returns the dates of the messages at idx (indexes into
// the view) that the view has none for; nil if there are none or the
// store keeps every date in its snapshots. A message the store no longer
// has (expunged by another session, still in this session's view) has
// no entry.
func (s *session) internalDates(idx []int) (map[uint32]time.Time, error) {
	ld, ok := s.folders.(mailbox.LazyDates)
	if !ok {
		return nil, nil
	}
	var uids []uint32
	for _, i := range idx {
		if m := s.view.Messages[i]; m.InternalDate.IsZero() {
			uids = append(uids, m.UID)
		}
	}
	if len(uids) == 0 {
		return nil, nil
	}
	dates, err := ld.InternalDates(s.ctx, s.name, uids)
	if err != nil {
		return nil, s.fail("read internal dates", err)
	}
	if dates == nil {
		dates = map[uint32]time.Time{}
	}
	return dates, nil
}

// dateOf is m's internal date, from dates where the view has none; false
// if the store was asked for it and has none (the message is gone).
func dateOf(m *mailbox.Message, dates map[uint32]time.Time) (time.Time, bool) {
	if !m.InternalDate.IsZero() || dates == nil {
		return m.InternalDate, true
	}
	d, ok := dates[m.UID]
	return d, ok
}

// needsDates says whether criteria look at the internal date.
func needsDates(c *goimap.SearchCriteria) bool {
	if !c.Since.IsZero() || !c.Before.IsZero() {
		return true
	}
	for i := range c.Not {
		if needsDates(&c.Not[i]) {
			return true
		}
	}
	for _, or := range c.Or {
		if needsDates(&or[0]) || needsDates(&or[1]) {
			return true
		}
	}
	return false
}
