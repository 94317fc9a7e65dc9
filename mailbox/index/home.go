package index

// What an account's bucket holds besides its folders' indexes:
// subscriptions and special use, the same in every format.

import (
	"strings"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox"
)

// InitHome records a new account: DefaultFolders with their special use,
// and the folders named in subscribe subscribed (INBOX, the defaults and
// those already on disk: a mail store copied from elsewhere comes without
// its subscriptions).
func (t Tree) InitHome(tx *bolt.Tx, home string, subscribe []string) error {
	hb, err := t.MakeHome(tx, home)
	if err != nil {
		return err
	}
	subs, special := hb.Bucket(bucketSubs), hb.Bucket(bucketSpecial)
	for _, d := range DefaultFolders() {
		if err := special.Put([]byte(d.Name), []byte(d.Use)); err != nil {
			return err
		}
	}
	for _, name := range subscribe {
		if err := subs.Put([]byte(name), nil); err != nil {
			return err
		}
	}
	return nil
}

// Describe sets the subscription and special use of each of folders
// (named already), as LIST shows them.
func (t Tree) Describe(tx *bolt.Tx, home string, folders []mailbox.Folder) {
	hb := t.Home(tx, home)
	if hb == nil {
		return
	}
	subs, special := hb.Bucket(bucketSubs), hb.Bucket(bucketSpecial)
	for i := range folders {
		n := []byte(folders[i].Name)
		folders[i].Subscribed = subs.Get(n) != nil
		folders[i].SpecialUse = string(special.Get(n))
	}
}

// Subscriptions returns every name home has subscribed, in bbolt's
// (byte) order, whether its folder exists or not.
func (t Tree) Subscriptions(tx *bolt.Tx, home string) []string {
	hb := t.Home(tx, home)
	if hb == nil {
		return nil
	}
	var names []string
	hb.Bucket(bucketSubs).ForEach(func(k, _ []byte) error {
		names = append(names, string(k))
		return nil
	})
	return names
}

// SetSubscribed subscribes home to name, or unsubscribes it.
func (t Tree) SetSubscribed(tx *bolt.Tx, home, name string, on bool) error {
	hb, err := t.MakeHome(tx, home)
	if err != nil {
		return err
	}
	if on {
		return hb.Bucket(bucketSubs).Put([]byte(name), nil)
	}
	return hb.Bucket(bucketSubs).Delete([]byte(name))
}

// SpecialFolder names home's first folder (in byte order) of special use
// use, compared without case, or "".
func (t Tree) SpecialFolder(tx *bolt.Tx, home, use string) string {
	hb := t.Home(tx, home)
	if hb == nil {
		return ""
	}
	var name string
	hb.Bucket(bucketSpecial).ForEach(func(k, v []byte) error {
		if name == "" && strings.EqualFold(string(v), use) {
			name = string(k)
		}
		return nil
	})
	return name
}

// ClearSpecial drops the special use of home's folder name (DELETE).
func (t Tree) ClearSpecial(tx *bolt.Tx, home, name string) error {
	hb, err := t.MakeHome(tx, home)
	if err != nil {
		return err
	}
	return hb.Bucket(bucketSpecial).Delete([]byte(name))
}
