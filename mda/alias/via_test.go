package alias

import "testing"

// TestViaString: every rule has the word `mailroom route` prints for it
// (srs among them), and an unknown value says so instead of printing "".
func TestViaString(t *testing.T) {
	for _, tc := range []struct {
		via  Via
		want string
	}{
		{ViaNone, ""},
		{ViaAlias, "alias"},
		{ViaCatchAll, "catch-all"},
		{ViaForward, ".forward"},
		{ViaInclude, "include"},
		{ViaAccount, "account"},
		{ViaSelf, "self"},
		{ViaNoExpand, `\`},
		{ViaRemote, "remote"},
		{ViaDuplicate, "duplicate"},
		{ViaSRS, "srs"},
		{ViaSRS + 1, "Via(11)"},
		{-1, "Via(-1)"},
	} {
		if got := tc.via.String(); got != tc.want {
			t.Errorf("Via(%d).String() = %q, want %q", int(tc.via), got, tc.want)
		}
	}
	for v := ViaAlias; v <= ViaSRS; v++ {
		if v.String() == "" {
			t.Errorf("Via(%d) has no name", int(v))
		}
	}
}
