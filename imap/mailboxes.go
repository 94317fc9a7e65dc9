package imap

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"

	goimap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"mailroom/mailbox"
)

// Commands on folders as a whole: CREATE, DELETE, RENAME, SUBSCRIBE,
// UNSUBSCRIBE, LIST/LSUB and STATUS.

func (s *session) Create(name string, options *goimap.CreateOptions) error {
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
	name, err := checkName(name)
	if err != nil {
		return err
	}
	return s.fail("subscribe", s.folders.SetSubscribed(s.ctx, name, on))
}

// listEntry is a name LIST may show: a folder, a missing superior of
// one, or a subscribed name without its folder (\NonExistent, RFC 5258
// §3).
type listEntry struct {
	mailbox.Folder
	exists      bool
	hasChildren bool
}

// subscriptionLister is a store that keeps subscriptions to names whose
// folders do not exist (RFC 9051 §6.3.7: deleting a folder does not
// unsubscribe it); LIST (SUBSCRIBED) and LSUB show those too.
type subscriptionLister interface {
	Subscriptions(ctx context.Context) ([]string, error)
}

// List answers LIST and LSUB, with the LIST-EXTENDED selection and return
// options (RFC 5258), SPECIAL-USE (RFC 6154), CHILDREN (RFC 3348) and
// LIST-STATUS (RFC 5819).
func (s *session) List(w *listWriter, ref string, patterns []string, options *goimap.ListOptions) error {
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
	if sl, ok := s.folders.(subscriptionLister); ok && options.SelectSubscribed {
		subs, err := sl.Subscriptions(s.ctx)
		if err != nil {
			return s.fail("list subscriptions", err)
		}
		for _, n := range subs {
			if entries[n] == nil {
				entries[n] = &listEntry{Folder: mailbox.Folder{Name: n, Subscribed: true}}
			}
		}
	}
	for _, f := range slices.Collect(maps.Values(entries)) {
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
			e.hasChildren = e.hasChildren || f.exists
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
	extended := len(patterns) > 1 || *options != (goimap.ListOptions{SelectSubscribed: w.lsub})
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
			switch {
			case options.SelectRecursiveMatch && subscribedBelow(entries, names, n, ref, patterns):
				data.ChildInfo = &goimap.ListDataChildInfo{Subscribed: true}
			case w.lsub && wildcardPercent(patterns) && subscribedBelow(entries, names, n, "", nil):
				// RFC 3501 §6.3.9: LSUB "%" shows an unsubscribed
				// level above subscribed ones, \Noselect.
				data.Attrs = append(data.Attrs, goimap.MailboxAttrNoSelect)
				if err := w.WriteList(&data); err != nil {
					return err
				}
				continue
			default:
				continue
			}
		}
		if !e.exists {
			// RFC 5258 §3: \NonExistent implies \Noselect; the
			// extended forms get it alone, IMAP4rev1's LIST both.
			data.Attrs = append(data.Attrs, goimap.MailboxAttrNonExistent)
			if !extended {
				data.Attrs = append(data.Attrs, goimap.MailboxAttrNoSelect)
			}
		}
		if e.NoSelect && e.exists {
			data.Attrs = append(data.Attrs, goimap.MailboxAttrNoSelect)
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

// subscribedBelow says whether a folder below name is subscribed and,
// with patterns, not matched by them itself (RFC 5258 §3.5: CHILDINFO
// stands for descendants the client does not get).
func subscribedBelow(entries map[string]*listEntry, names []string, name, ref string, patterns []string) bool {
	prefix := name + string(delim)
	for _, n := range names {
		if strings.HasPrefix(n, prefix) && entries[n].Subscribed && (patterns == nil || !matchAny(n, ref, patterns)) {
			return true
		}
	}
	return false
}

func wildcardPercent(patterns []string) bool {
	for _, p := range patterns {
		if strings.Contains(p, "%") {
			return true
		}
	}
	return false
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
	recent = s.statusRecent(name, snap)
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
