package imap

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"time"

	goimap "github.com/emersion/go-imap/v2"

	"mailroom/mailbox"
)

// Commands that change messages: STORE, COPY, MOVE, EXPUNGE and APPEND.

func (s *session) uidsOf(idx []int) []uint32 {
	uids := make([]uint32, len(idx))
	for k, i := range idx {
		uids[k] = s.view.Messages[i].UID
	}
	return uids
}

// Store runs STORE. A keyword new to the client is announced in FLAGS
// before the FETCH responses that carry it (RFC 9051 §7.3.5).
func (s *session) Store(w *fetchWriter, numSet goimap.NumSet, flags *goimap.StoreFlags) error {
	if s.readOnly {
		return errReadOnly
	}
	for _, f := range flags.Flags {
		if f == goimap.FlagWildcard {
			return bad(`\* is not a flag`)
		}
	}
	idx, err := s.resolve(numSet)
	if err != nil || len(idx) == 0 {
		return err
	}
	op := map[goimap.StoreFlagsOp]mailbox.FlagOp{
		goimap.StoreFlagsSet: mailbox.FlagsSet,
		goimap.StoreFlagsAdd: mailbox.FlagsAdd,
		goimap.StoreFlagsDel: mailbox.FlagsRemove,
	}[flags.Op]
	snap, err := s.folders.SetFlags(s.ctx, s.name, s.uidsOf(idx), op, storeFlags(flags.Flags))
	if err != nil {
		return s.fail("store", err)
	}
	added := false
	for _, i := range idx {
		if k, ok := indexOf(snap.Messages, s.view.Messages[i].UID); ok {
			var a bool
			s.keywords, a = keywordsOf(s.keywords, snap.Messages[k].Flags)
			added = added || a
		}
	}
	if added {
		if err := (&updateWriter{c: s.conn, locked: true}).WriteMailboxFlags(mailboxFlags(s.keywords), true); err != nil {
			return err
		}
	}
	_, isUID := numSet.(goimap.UIDSet)
	for _, i := range idx {
		uid := s.view.Messages[i].UID
		k, ok := indexOf(snap.Messages, uid)
		if !ok {
			continue // expunged meanwhile; the next poll says so
		}
		m := snap.Messages[k]
		s.noteReported(uid, m.ModSeq)
		if flags.Silent {
			continue
		}
		rw := w.CreateMessage(uint32(i + 1))
		if isUID {
			rw.WriteUID(goimap.UID(uid))
		}
		rw.WriteFlags(s.flagsOf(m))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

func (s *session) Copy(numSet goimap.NumSet, dest string) (*goimap.CopyData, error) {
	dest, err := checkName(dest)
	if err != nil {
		return nil, err
	}
	idx, err := s.resolve(numSet)
	if err != nil || len(idx) == 0 {
		return nil, err
	}
	uv, src, dst, err := s.folders.Copy(s.ctx, s.name, s.uidsOf(idx), dest)
	if err != nil {
		return nil, s.failTry("copy", err)
	}
	return copyData(uv, src, dst), nil
}

// copyData is the COPYUID response code (RFC 4315), nil if nothing was
// copied (an empty set cannot be written).
func copyData(uv uint32, src, dst []uint32) *goimap.CopyData {
	if len(src) == 0 || len(src) != len(dst) {
		return nil
	}
	var a, b goimap.UIDSet
	for i := range src {
		a.AddNum(goimap.UID(src[i]))
		b.AddNum(goimap.UID(dst[i]))
	}
	return &goimap.CopyData{UIDValidity: uv, SourceUIDs: a, DestUIDs: b}
}

func (s *session) Move(w *updateWriter, numSet goimap.NumSet, dest string) error {
	if s.readOnly {
		return errReadOnly
	}
	dest, err := checkName(dest)
	if err != nil {
		return err
	}
	idx, err := s.resolve(numSet)
	if err != nil || len(idx) == 0 {
		return err
	}
	uv, src, dst, err := s.folders.Move(s.ctx, s.name, s.uidsOf(idx), dest)
	if err != nil {
		return s.failTry("move", err)
	}
	if cd := copyData(uv, src, dst); cd != nil {
		if err := w.WriteCopyData(cd); err != nil {
			return err
		}
	}
	slices.Sort(src)
	return s.remove(func(uid uint32) bool {
		_, found := slices.BinarySearch(src, uid)
		return found
	}, w.WriteExpunge)
}

// Expunge removes the messages marked \Deleted (of uids only, for UID
// EXPUNGE) and reports them.
func (s *session) Expunge(w *updateWriter, uids *goimap.UIDSet) error {
	if s.readOnly {
		return errReadOnly
	}
	return s.expunge(w.WriteExpunge, uids, false)
}

// closeFolder is CLOSE's silent expunge; in EXAMINE it expunges nothing
// (RFC 9051 §6.4.2).
func (s *session) closeFolder() error {
	if s.readOnly {
		return nil
	}
	return s.expunge(func(uint32) error { return nil }, nil, true)
}

func (s *session) expunge(write func(seq uint32) error, uids *goimap.UIDSet, isClose bool) error {
	snap, err := s.folders.Sync(s.ctx, s.name)
	if isClose && errors.Is(err, mailbox.ErrNoFolder) {
		return nil // deleted meanwhile: CLOSE still leaves the selected state
	}
	if err != nil {
		return s.fail("expunge", err)
	}
	var del []uint32
	for _, m := range snap.Messages {
		if hasFlag(m.Flags, mailbox.FlagDeleted) && (uids == nil || uids.Contains(goimap.UID(m.UID))) {
			del = append(del, m.UID)
		}
	}
	if len(del) == 0 {
		return nil
	}
	after, err := s.folders.Expunge(s.ctx, s.name, del)
	if err != nil {
		return s.fail("expunge", err)
	}
	return s.remove(func(uid uint32) bool {
		if _, ok := slices.BinarySearch(del, uid); !ok {
			return false
		}
		_, still := indexOf(after.Messages, uid)
		return !still
	}, write)
}

// Append stores a message of size bytes read from r; binary says it came
// as a literal8 (RFC 3516 §4.4).
func (s *session) Append(name string, r io.Reader, size int64, binary bool, options *goimap.AppendOptions) (*goimap.AppendData, error) {
	name, err := checkName(name)
	if err != nil {
		return nil, err
	}
	date := options.Time
	if date.IsZero() {
		date = time.Now()
	}
	if binary {
		// unbinary needs the whole message; a literal8 APPEND is rare
		// and bounded by AppendLimit.
		msg, err := io.ReadAll(r)
		if err != nil {
			return nil, errConnGone
		}
		r = bytes.NewReader(unbinary(msg))
	}
	uv, uid, err := s.folders.Append(s.ctx, name, r, storeFlags(options.Flags), date)
	if err != nil {
		return nil, s.failTry("append", err)
	}
	s.log.Info("message appended", "event", "append", "folder", name, "uid", uid, "size", size)
	return &goimap.AppendData{UIDValidity: uv, UID: goimap.UID(uid)}, nil
}
