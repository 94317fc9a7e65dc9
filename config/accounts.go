package config

// Accounts is the [accounts] table: how account passwords are kept.
type Accounts struct {
	// BcryptCost is the bcrypt work factor of the password hashes that
	// `user add` and `user passwd` make, from 4 to 31. Each step doubles
	// the work of every login and of every guess at a password from a
	// stolen mailroom.db; hashes made before a change keep their own
	// factor. The test suites set 4: at 10, one hash takes seconds under
	// the race detector. Default 10 (bcrypt's).
	BcryptCost int `toml:"bcrypt_cost"`
}

// The range of accounts.bcrypt_cost (golang.org/x/crypto/bcrypt's
// MinCost and MaxCost) and its default.
const (
	minBcryptCost     = 4
	maxBcryptCost     = 31
	DefaultBcryptCost = 10
)

// validateAccounts checks the [accounts] table.
func (c *Config) validateAccounts(bad func(key, format string, args ...any)) {
	if n := c.Accounts.BcryptCost; n < minBcryptCost || n > maxBcryptCost {
		bad("accounts.bcrypt_cost", "%d is not from %d to %d (default %d)", n, minBcryptCost, maxBcryptCost, DefaultBcryptCost)
	}
}
