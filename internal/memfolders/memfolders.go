// Package memfolders is an in-memory folder store (an imap.Store whose
// Open returns mailbox.Folders), for tests of the IMAP server (unit, fuzz and
// end-to-end helpers) that should not depend on Maildir. It keeps the
// contract of the real store: immutable snapshots, UIDs that only grow,
// a modification sequence per change, and Watch channels closed on every
// change made through it. It imports only mailbox, so the imap package's
// own tests can use it without an import cycle.
package memfolders

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"mailroom/mailbox"
)

// Store holds every account's folders, keyed by mail home.
type Store struct {
	// headerCache makes Open return folders that implement
	// mailbox.HeaderCache (NewWithHeaderCache).
	headerCache bool
	cacheStats  CacheStats

	mu       sync.Mutex
	accounts map[string]*account
	nextUV   uint32
}

// New returns an empty Store.
func New() *Store {
	return &Store{accounts: map[string]*account{}, nextUV: 1000}
}

type account struct {
	folders map[string]*folder
}

type folder struct {
	name        string
	specialUse  string
	subscribed  bool
	uidValidity uint32
	uidNext     uint32
	modSeq      uint64
	msgs        []*message
	snap        *mailbox.Snapshot // nil when stale
	watch       chan struct{}
}

type message struct {
	mailbox.Message
	body   []byte
	fields []byte // HeaderCache entry; nil: none
}

var specials = []struct{ name, use string }{
	{"Sent", `\Sent`}, {"Drafts", `\Drafts`}, {"Trash", `\Trash`}, {"Junk", `\Junk`}, {"Archive", `\Archive`},
}

// Open returns the folders of home, creating INBOX and the special-use
// folders on first use.
func (s *Store) Open(ctx context.Context, home string) (mailbox.Folders, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.accounts[home]
	if a == nil {
		a = &account{folders: map[string]*folder{}}
		s.accounts[home] = a
		s.newFolderLocked(a, "INBOX", "")
		for _, sp := range specials {
			s.newFolderLocked(a, sp.name, sp.use)
		}
	}
	if s.headerCache {
		return &cachingFolders{Folders{s: s, a: a}}, nil
	}
	return &Folders{s: s, a: a}, nil
}

func (s *Store) newFolderLocked(a *account, name, use string) *folder {
	s.nextUV++
	f := &folder{name: name, specialUse: use, subscribed: true, uidValidity: s.nextUV, uidNext: 1, watch: make(chan struct{})}
	a.folders[name] = f
	return f
}

// Deliver adds a message to a folder of home as a delivery through this
// process would (Watch channels are closed). It returns the new UID.
func (s *Store) Deliver(home, name string, body []byte) (uint32, error) {
	return s.deliver(home, name, body, true)
}

// DeliverQuietly adds a message as another program writing into the
// Maildir would: nothing is notified, a Sync finds it.
func (s *Store) DeliverQuietly(home, name string, body []byte) (uint32, error) {
	return s.deliver(home, name, body, false)
}

func (s *Store) deliver(home, name string, body []byte, notify bool) (uint32, error) {
	if _, err := s.Open(context.Background(), home); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.accounts[home].folders[name]
	if f == nil {
		return 0, mailbox.ErrNoFolder
	}
	uid := f.add(body, nil, time.Now())
	if notify {
		f.changed()
	} else {
		f.snap = nil
	}
	return uid, nil
}

// RemoveQuietly removes a message as another program would (rm in cur/).
func (s *Store) RemoveQuietly(home, name string, uid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.accounts[home].folders[name]
	f.msgs = slices.DeleteFunc(f.msgs, func(m *message) bool { return m.UID == uid })
	f.snap = nil
}

func (f *folder) add(body []byte, flags []string, date time.Time) uint32 {
	f.modSeq++
	m := &message{body: crlf(body)}
	m.UID = f.uidNext
	f.uidNext++
	m.Flags = normFlags(flags)
	m.InternalDate = date
	m.Size = int64(len(m.body))
	m.ModSeq = f.modSeq
	f.msgs = append(f.msgs, m)
	return m.UID
}

// changed marks the snapshot stale and wakes the watchers.
func (f *folder) changed() {
	f.snap = nil
	close(f.watch)
	f.watch = make(chan struct{})
}

func (f *folder) snapshot() *mailbox.Snapshot {
	if f.snap == nil {
		s := &mailbox.Snapshot{UIDValidity: f.uidValidity, UIDNext: f.uidNext, HighestModSeq: f.modSeq}
		s.Messages = make([]mailbox.Message, len(f.msgs))
		for i, m := range f.msgs {
			s.Messages[i] = m.Message
		}
		f.snap = s
	}
	return f.snap
}

// crlf turns bare LF line endings into CRLF, as the real store serves.
func crlf(b []byte) []byte {
	var out bytes.Buffer
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out.WriteByte('\r')
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}

func normFlags(flags []string) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

var _ mailbox.Folders = (*Folders)(nil)

// Folders is one session's handle on an account.
type Folders struct {
	s *Store
	a *account
}

func checkName(name string) error {
	if name == "" || !utf8.ValidString(name) || strings.ContainsAny(name, "\x00\r\n") ||
		strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.Contains(name, "//") || len(name) > 255 {
		return mailbox.ErrBadFolderName
	}
	for _, p := range strings.Split(name, "/") {
		if p == "." || p == ".." || strings.Contains(p, ".") {
			return mailbox.ErrBadFolderName
		}
	}
	return nil
}

func (f *Folders) get(name string) (*folder, error) {
	fo := f.a.folders[name]
	if fo == nil {
		return nil, fmt.Errorf("folder %q: %w", name, mailbox.ErrNoFolder)
	}
	return fo, nil
}

func (f *Folders) List(ctx context.Context) ([]mailbox.Folder, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	var out []mailbox.Folder
	for _, fo := range f.a.folders {
		out = append(out, mailbox.Folder{Name: fo.name, SpecialUse: fo.specialUse, Subscribed: fo.subscribed})
	}
	slices.SortFunc(out, func(a, b mailbox.Folder) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (f *Folders) Create(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if f.a.folders[name] != nil {
		return mailbox.ErrFolderExists
	}
	// Missing parents are made too, as the real stores do.
	levels := strings.Split(name, "/")
	for i := range levels {
		if n := strings.Join(levels[:i+1], "/"); f.a.folders[n] == nil {
			f.s.newFolderLocked(f.a, n, "").subscribed = false
		}
	}
	return nil
}

func (f *Folders) Delete(ctx context.Context, name string) error {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if name == "INBOX" {
		return mailbox.ErrNotAllowed
	}
	fo, err := f.get(name)
	if err != nil {
		return err
	}
	delete(f.a.folders, name)
	fo.changed()
	return nil
}

func (f *Folders) Rename(ctx context.Context, oldName, newName string) error {
	if err := checkName(newName); err != nil {
		return err
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	fo, err := f.get(oldName)
	if err != nil {
		return err
	}
	if f.a.folders[newName] != nil {
		return mailbox.ErrFolderExists
	}
	if strings.HasPrefix(newName, oldName+"/") {
		return mailbox.ErrNotAllowed
	}
	if oldName == "INBOX" {
		nf := f.s.newFolderLocked(f.a, newName, "")
		nf.msgs, fo.msgs = fo.msgs, nil
		nf.uidNext, nf.modSeq = fo.uidNext, fo.modSeq
		fo.changed()
		return nil
	}
	for n, c := range f.a.folders {
		if n == oldName || strings.HasPrefix(n, oldName+"/") {
			delete(f.a.folders, n)
			c.name = newName + strings.TrimPrefix(n, oldName)
			f.a.folders[c.name] = c
			c.changed()
		}
	}
	return nil
}

func (f *Folders) SetSubscribed(ctx context.Context, name string, on bool) error {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	fo, err := f.get(name)
	if err != nil {
		return err
	}
	fo.subscribed = on
	return nil
}

func (f *Folders) Sync(ctx context.Context, name string) (*mailbox.Snapshot, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	fo, err := f.get(name)
	if err != nil {
		return nil, err
	}
	return fo.snapshot(), nil
}

// Watch returns a channel closed at the next change. For a folder that
// does not exist it returns a channel that is never closed.
func (f *Folders) Watch(name string) <-chan struct{} {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	if fo := f.a.folders[name]; fo != nil {
		return fo.watch
	}
	return make(chan struct{})
}

type readSeekCloser struct{ *bytes.Reader }

func (readSeekCloser) Close() error { return nil }

func (f *Folders) Open(ctx context.Context, name string, uid uint32) (io.ReadSeekCloser, int64, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	fo, err := f.get(name)
	if err != nil {
		return nil, 0, err
	}
	for _, m := range fo.msgs {
		if m.UID == uid {
			return readSeekCloser{bytes.NewReader(m.body)}, int64(len(m.body)), nil
		}
	}
	return nil, 0, mailbox.ErrNoMessage
}

func (f *Folders) Append(ctx context.Context, name string, r io.Reader, flags []string, date time.Time) (uint32, uint32, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return 0, 0, err
	}
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	fo, err := f.get(name)
	if err != nil {
		return 0, 0, err
	}
	uid := fo.add(body, flags, date)
	fo.changed()
	return fo.uidValidity, uid, nil
}

func (f *Folders) SetFlags(ctx context.Context, name string, uids []uint32, op mailbox.FlagOp, flags []string) (*mailbox.Snapshot, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	fo, err := f.get(name)
	if err != nil {
		return nil, err
	}
	changed := false
	for i, m := range fo.msgs {
		if !slices.Contains(uids, m.UID) {
			continue
		}
		var nf []string
		switch op {
		case mailbox.FlagsSet:
			nf = normFlags(flags)
		case mailbox.FlagsAdd:
			nf = normFlags(append(slices.Clone(m.Flags), flags...))
		case mailbox.FlagsRemove:
			nf = slices.DeleteFunc(slices.Clone(m.Flags), func(s string) bool { return slices.Contains(flags, s) })
		}
		if slices.Equal(nf, m.Flags) {
			continue
		}
		fo.modSeq++
		c := *m
		c.Flags, c.ModSeq = nf, fo.modSeq
		fo.msgs[i] = &c
		changed = true
	}
	if changed {
		fo.changed()
	}
	return fo.snapshot(), nil
}

func (f *Folders) copy(name string, uids []uint32, dest string, move bool) (uint32, []uint32, []uint32, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	fo, err := f.get(name)
	if err != nil {
		return 0, nil, nil, err
	}
	d, err := f.get(dest)
	if err != nil {
		return 0, nil, nil, err
	}
	var src, dst []uint32
	for _, m := range fo.msgs {
		if slices.Contains(uids, m.UID) {
			src = append(src, m.UID)
			dst = append(dst, d.add(m.body, m.Flags, m.InternalDate))
		}
	}
	if move {
		fo.msgs = slices.DeleteFunc(fo.msgs, func(m *message) bool { return slices.Contains(src, m.UID) })
		fo.changed()
	}
	d.changed()
	return d.uidValidity, src, dst, nil
}

func (f *Folders) Copy(ctx context.Context, name string, uids []uint32, dest string) (uint32, []uint32, []uint32, error) {
	return f.copy(name, uids, dest, false)
}

func (f *Folders) Move(ctx context.Context, name string, uids []uint32, dest string) (uint32, []uint32, []uint32, error) {
	return f.copy(name, uids, dest, true)
}

func (f *Folders) Expunge(ctx context.Context, name string, uids []uint32) (*mailbox.Snapshot, error) {
	f.s.mu.Lock()
	defer f.s.mu.Unlock()
	fo, err := f.get(name)
	if err != nil {
		return nil, err
	}
	n := len(fo.msgs)
	fo.msgs = slices.DeleteFunc(fo.msgs, func(m *message) bool { return slices.Contains(uids, m.UID) })
	if len(fo.msgs) != n {
		fo.changed()
	}
	return fo.snapshot(), nil
}

func (f *Folders) Close() error { return nil }
