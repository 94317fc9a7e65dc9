package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"mailroom/account"
	"mailroom/config"
)

// Development mode (`serve -dev`): a private server on loopback, with its
// configuration, data and one account under ./mailroom-dev, so that a
// newcomer has something to deliver to with a single command.
const (
	devDir     = "mailroom-dev"
	devAddress = "dev@example.test"
)

const devTOML = `# Written by "mailroom serve -dev". Edit freely; delete the directory to start over.
hostname = "localhost"
data_dir = "."
domains  = ["example.test"]

[lmtp]
listen = ["127.0.0.1:2424", "unix:lmtp.sock"]

[smtp]                 # MX role: mail for example.test from anyone
listen = ["127.0.0.1:2525"]

[submission]           # authenticated users; AUTH works without TLS on loopback only
listen = ["127.0.0.1:2587"]

[imap]                 # LOGIN works without TLS on loopback only
listen = ["127.0.0.1:2143"]
`

// devConfig writes the development configuration if it is missing (or uses
// path if one was given) and loads it.
func devConfig(path string) (*config.Config, error) {
	if path == "" {
		path = filepath.Join(devDir, "mailroom.toml")
		if err := os.MkdirAll(devDir, 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err == nil {
			_, err = io.WriteString(f, devTOML)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
	}
	cfg, err := config.Load(path)
	return cfg, withExit(exitConfig, err)
}

// devAccount creates dev@example.test with a random password on first
// start (or resets it if its password file is gone) and says how to use it.
func devAccount(a *app, stdout io.Writer) error {
	pwFile := filepath.Join(a.cfg.DataDir, "dev-password")
	pw, err := os.ReadFile(pwFile)
	if errors.Is(err, fs.ErrNotExist) {
		p := rand.Text()[:16]
		_, err = a.accounts.Add(devAddress, p)
		if errors.Is(err, account.ErrExists) {
			err = a.accounts.SetPassword(devAddress, p)
		}
		if err != nil {
			return err
		}
		pw = []byte(p + "\n")
		err = os.WriteFile(pwFile, pw, 0o600)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `mailroom development server
  config:   %s   (export MAILROOM_CONFIG=%[1]s)
  account:  %s   password: %s  (kept in %s)
  LMTP:     127.0.0.1:2424 and unix:%s
  SMTP:     127.0.0.1:2525 (MX), 127.0.0.1:2587 (submission, AUTH as the account above)
  IMAP:     127.0.0.1:2143 (LOGIN as the account above)
  mail:     %s
`, a.cfg.Path, devAddress, string(pw[:len(pw)-1]), pwFile,
		filepath.Join(a.cfg.DataDir, "lmtp.sock"), filepath.Join(a.cfg.MailRoot(), "example.test", "dev", "Maildir"))
	return nil
}
