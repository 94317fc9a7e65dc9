package smtpconn

import "testing"

func TestFixReply(t *testing.T) {
	cases := map[string]string{
		"502 5.5.1 Missing RCPT TO command.\r\n":   "503 5.5.1 Missing RCPT TO command.\r\n",
		"502 5.5.1 Missing MAIL FROM command.\r\n": "503 5.5.1 Missing MAIL FROM command.\r\n",
		"250-SIZE\r\n": "250-SIZE 1000\r\n",
		"250 SIZE\r\n": "250 SIZE 1000\r\n",
		"502 5.5.1 HELP command not implemented\r\n": "",
		"454 4.7.0 Invalid base64 data\r\n":          "501 5.5.2 Invalid base64 data\r\n",
		"250-SIZE 5\r\n":                             "",
	}
	for in, want := range cases {
		if got := string(fixReply([]byte(in), 1000)); got != want {
			t.Errorf("fixReply(%q) = %q, want %q", in, got, want)
		}
	}
	if got := fixReply([]byte("250 SIZE\r\n"), 0); got != nil {
		t.Errorf("fixReply without a size to announce = %q, want nil", got)
	}
}
