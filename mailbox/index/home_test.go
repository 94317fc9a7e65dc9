package index

import (
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"mailroom/mailbox"
)

// A new account's defaults, then what LIST, LSUB and a delivery's
// special-use lookup see of it after SUBSCRIBE, UNSUBSCRIBE and DELETE.
func TestHome(t *testing.T) {
	t.Parallel()
	db, tr := openTree(t)
	step := func(fn func(tx *bolt.Tx) error) {
		t.Helper()
		if err := db.Update(fn); err != nil {
			t.Fatal(err)
		}
	}
	step(func(tx *bolt.Tx) error {
		if tr.Home(tx, "h") != nil || tr.Subscriptions(tx, "h") != nil || tr.SpecialFolder(tx, "h", `\Junk`) != "" {
			t.Error("an unknown account has state")
		}
		return tr.InitHome(tx, "h", []string{"INBOX", "Junk", "Old"})
	})
	step(func(tx *bolt.Tx) error { return tr.SetSubscribed(tx, "h", "Other", true) })
	step(func(tx *bolt.Tx) error { return tr.SetSubscribed(tx, "h", "Old", false) })
	step(func(tx *bolt.Tx) error { return tr.ClearSpecial(tx, "h", "Archive") })
	db.View(func(tx *bolt.Tx) error {
		if got, want := tr.Subscriptions(tx, "h"), []string{"INBOX", "Junk", "Other"}; !slices.Equal(got, want) {
			t.Errorf("Subscriptions = %q, want %q", got, want)
		}
		if got := tr.SpecialFolder(tx, "h", `\junk`); got != "Junk" {
			t.Errorf(`SpecialFolder(\junk) = %q`, got)
		}
		if got := tr.SpecialFolder(tx, "h", `\Archive`); got != "" {
			t.Errorf(`SpecialFolder(\Archive) = %q after ClearSpecial`, got)
		}
		fs := []mailbox.Folder{{Name: "INBOX"}, {Name: "Junk"}, {Name: "Old"}}
		tr.Describe(tx, "h", fs)
		want := []mailbox.Folder{{Name: "INBOX", Subscribed: true}, {Name: "Junk", Subscribed: true, SpecialUse: `\Junk`}, {Name: "Old"}}
		if !slices.Equal(fs, want) {
			t.Errorf("Describe = %+v, want %+v", fs, want)
		}
		return nil
	})
}
