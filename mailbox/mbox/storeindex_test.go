package mbox

import (
	"reflect"
	"testing"

	"mailroom/mailbox"
)

// FuzzDecodeRecord: the load's decoder of a record straight into a
// message (decodeMessageInto) accepts exactly the records that the
// entry's decoder accepts, and makes the message that the entry makes.
func FuzzDecodeRecord(f *testing.F) {
	for _, e := range []entry{
		{modSeq: 1, date: 1733300000, off: 0, start: 40, body: 400, end: 4096, flags: 3},
		{modSeq: 77, date: -5, off: 1 << 40, start: 1<<40 + 30, body: 1<<40 + 31, end: 1<<40 + 90,
			quoted: 2, bareLF: 9, hidden: 30, verbatim: true, truncated: true, sig: 42, kws: []string{"$Label1", "work"}},
	} {
		f.Add(e.encode())
	}
	f.Add([]byte{entryVersion, 0x80})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fo folder
		var e entry
		errEntry := decodeEntryInto(&e, 7, b)
		var m mailbox.Message
		errMsg := decodeMessageInto(&m, 7, b, &fo.snaps)
		if (errEntry == nil) != (errMsg == nil) {
			t.Fatalf("entry's decoder: %v, message's: %v", errEntry, errMsg)
		}
		if errEntry != nil {
			return
		}
		if want := fo.message(&e); !reflect.DeepEqual(m, want) {
			t.Fatalf("message %+v, the entry makes %+v", m, want)
		}
	})
}
