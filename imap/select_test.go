package imap

import "testing"

func TestNormRange(t *testing.T) {
	for _, c := range []struct {
		start, stop, last uint32
		want              [2]uint32
	}{
		{2, 4, 9, [2]uint32{2, 4}},
		{4, 2, 9, [2]uint32{2, 4}},   // "4:2" is "2:4"
		{0, 3, 9, [2]uint32{3, 9}},   // "*:3"
		{3, 0, 9, [2]uint32{3, 9}},   // "3:*"
		{0, 0, 9, [2]uint32{9, 9}},   // "*"
		{12, 0, 9, [2]uint32{9, 12}}, // "12:*" beyond the last
		{0, 0, 0, [2]uint32{0, 0}},   // "*" in an empty folder
		{7, 7, 9, [2]uint32{7, 7}},   // one number
	} {
		start, stop := normRange(c.start, c.stop, c.last)
		if got := [2]uint32{start, stop}; got != c.want {
			t.Errorf("normRange(%d, %d, %d) = %v, want %v", c.start, c.stop, c.last, got, c.want)
		}
	}
}
