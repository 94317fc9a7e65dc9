package imap

import (
	"errors"
	"slices"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailroom/mailbox"
)

// Commands on folders as a whole: CREATE, DELETE, RENAME, SUBSCRIBE,
// UNSUBSCRIBE, LIST/LSUB and STATUS.

func (s *session) Create(name string, options *goimap.CreateOptions) error {
	defer s.enter()()
	// RFC 9051 §6.3.4: a trailing delimiter says the client means to
	// create names under it; the folder itself is created all the same.
	name = strings.TrimRight(name, string(delim))
	name, err := checkName(name)
	if err != nil {
		return err
	}
	if len(options.SpecialUse) > 0 {
		return no(goimap.ResponseCode("USEATTR"), "Special-use attributes cannot be set")
	}
	if name == "INBOX" {
		return no(goimap.ResponseCodeAlreadyExists, "Mailbox already exists")
	}
	// Superior levels that are missing are created too (RFC 3501 §6.3.3).
	for i, c := range name {
		if c != delim {
			continue
		}
		if err := s.folders.Create(s.ctx, name[:i]); err != nil && !errors.Is(err, mailbox.ErrFolderExists) {
			return s.fail("create", err)
		}
	}
	if err := s.folders.Create(s.ctx, name); err != nil {
		return s.fail("create", err)
	}
	s.log.Info("folder created", "folder", name)
	return nil
}

func (s *session) Delete(name string) error {
	defer s.enter()()
	name, err := checkName(name)
	if err != nil {
		return err
	}
	if name == "INBOX" {
		return no(goimap.ResponseCodeCannot, "INBOX cannot be deleted")
	}
	if err := s.folders.Delete(s.ctx, name); err != nil {
		return s.fail("delete", err)
	}
	s.log.Info("folder deleted", "folder", name)
	return nil
}

func (s *session) Rename(oldName, newName string, options *goimap.RenameOptions) error {
	defer s.enter()()
	oldName, err := checkName(oldName)
	if err != nil {
		return err
	}
	newName, err = checkName(strings.TrimRight(newName, string(delim)))
	if err != nil {
		return err
	}
	if newName == "INBOX" {
		return no(goimap.ResponseCodeAlreadyExists, "Mailbox already exists")
	}
	if newName == oldName || strings.HasPrefix(newName, oldName+string(delim)) {
		return no(goimap.ResponseCodeCannot, "Cannot rename a mailbox into itself")
	}
	for i, c := range newName {
		if c == delim {
			if err := s.folders.Create(s.ctx, newName[:i]); err != nil && !errors.Is(err, mailbox.ErrFolderExists) {
				return s.fail("rename", err)
			}
		}
	}
	if err := s.folders.Rename(s.ctx, oldName, newName); err != nil {
		return s.fail("rename", err)
	}
	// Our own selected folder keeps its messages under the new name.
	if s.name != "" && oldName != "INBOX" {
		if s.name == oldName {
			s.name = newName
		} else if strings.HasPrefix(s.name, oldName+string(delim)) {
			s.name = newName + strings.TrimPrefix(s.name, oldName)
		}
	}
	s.log.Info("folder renamed", "folder", oldName, "new", newName)
	return nil
}

func (s *session) Subscribe(name string) error {
	return s.subscribe(name, true)
}

func (s *session) Unsubscribe(name string) error {
	return s.subscribe(name, false)
}

func (s *session) subscribe(name string, on bool) error {
	defer s.enter()()
	name, err := checkName(name)
	if err != nil {
		return err
	}
	return s.fail("subscribe", s.folders.SetSubscribed(s.ctx, name, on))
}

// listEntry is a name LIST may show: a folder, or a missing superior of
// one (\NonExistent, RFC 5258 §3).
type listEntry struct {
	mailbox.Folder
	exists      bool
	hasChildren bool
	// subChild: a descendant is subscribed (RECURSIVEMATCH, CHILDINFO).
	subChild bool
}

// List answers LIST and LSUB, with the LIST-EXTENDED selection and return
// options (RFC 5258), SPECIAL-USE (RFC 6154), CHILDREN (RFC 3348) and
// LIST-STATUS (RFC 5819).
func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *goimap.ListOptions) error {
	defer s.enter()()
	if len(patterns) == 0 {
		// LIST "" "": the delimiter and the root (RFC 9051 §6.3.9).
		return w.WriteList(&goimap.ListData{Attrs: []goimap.MailboxAttr{goimap.MailboxAttrNoSelect}, Delim: delim})
	}
	folders, err := s.folders.List(s.ctx)
	if err != nil {
		return s.fail("list", err)
	}
	entries := map[string]*listEntry{}
	for _, f := range folders {
		entries[f.Name] = &listEntry{Folder: f, exists: true}
	}
	for _, f := range folders {
		for i, c := range f.Name {
			if c != delim {
				continue
			}
			parent := f.Name[:i]
			e := entries[parent]
			if e == nil {
				e = &listEntry{Folder: mailbox.Folder{Name: parent}}
				entries[parent] = e
			}
			e.hasChildren = true
			if f.Subscribed {
				e.subChild = true
			}
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if a == "INBOX" || b == "INBOX" {
			return boolCmp(b == "INBOX", a == "INBOX")
		}
		return strings.Compare(a, b)
	})
	for _, n := range names {
		e := entries[n]
		if !matchAny(n, ref, patterns) {
			continue
		}
		data := goimap.ListData{Mailbox: n, Delim: delim}
		selected := true
		if options.SelectSubscribed && !e.Subscribed {
			selected = false
		}
		if options.SelectSpecialUse && e.SpecialUse == "" {
			selected = false
		}
		if !selected {
			if !(options.SelectRecursiveMatch && e.subChild) {
				continue
			}
			data.ChildInfo = &goimap.ListDataChildInfo{Subscribed: true}
		}
		if !e.exists {
			// RFC 5258 §3: \NonExistent implies \Noselect; rev1
			// clients know only the latter.
			data.Attrs = append(data.Attrs, goimap.MailboxAttrNonExistent, goimap.MailboxAttrNoSelect)
		}
		if e.hasChildren {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrHasChildren)
		} else {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrHasNoChildren)
		}
		if e.Subscribed && (options.SelectSubscribed || options.ReturnSubscribed) {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrSubscribed)
		}
		if e.SpecialUse != "" && validAttr(e.SpecialUse) {
			data.Attrs = append(data.Attrs, goimap.MailboxAttr(e.SpecialUse))
		}
		if options.ReturnStatus != nil && e.exists {
			st, err := s.status(n, options.ReturnStatus)
			if err == nil {
				data.Status = st
			}
		}
		if err := w.WriteList(&data); err != nil {
			return err
		}
	}
	return nil
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func matchAny(name, ref string, patterns []string) bool {
	for _, p := range patterns {
		if imapserver.MatchList(name, delim, ref, p) {
			return true
		}
		// INBOX is case-insensitive in patterns too.
		if name == "INBOX" && imapserver.MatchList(name, delim, strings.ToUpper(ref), strings.ToUpper(p)) {
			return true
		}
	}
	return false
}

func (s *session) Status(name string, options *goimap.StatusOptions) (*goimap.StatusData, error) {
	defer s.enter()()
	name, err := checkName(name)
	if err != nil {
		return nil, err
	}
	return s.status(name, options)
}

// status fills every item the library may write: it dereferences the
// pointers of all requested items.
func (s *session) status(name string, options *goimap.StatusOptions) (*goimap.StatusData, error) {
	snap, err := s.folders.Sync(s.ctx, name)
	if err != nil {
		return nil, s.fail("status", err)
	}
	var (
		num, unseen, deleted, recent uint32
		size, deletedSize            int64
	)
	num = uint32(len(snap.Messages))
	for _, m := range snap.Messages {
		size += m.Size
		if !hasFlag(m.Flags, mailbox.FlagSeen) {
			unseen++
		}
		if hasFlag(m.Flags, mailbox.FlagDeleted) {
			deleted++
			deletedSize += m.Size
		}
	}
	limit := s.srv.opts.AppendLimit
	return &goimap.StatusData{
		Mailbox:        name,
		NumMessages:    &num,
		UIDNext:        goimap.UID(snap.UIDNext),
		UIDValidity:    snap.UIDValidity,
		NumUnseen:      &unseen,
		NumDeleted:     &deleted,
		Size:           &size,
		AppendLimit:    &limit,
		DeletedStorage: &deletedSize,
		NumRecent:      &recent,
	}, nil
}
