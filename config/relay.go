package config

// Relay is the [relay] table: how mail leaves (forwards, bounces,
// submission to remote domains).
type Relay struct {
	// Smarthost "host:port" receives all outgoing mail; "" means MX lookup.
	Smarthost string `toml:"smarthost"`
}

// Queue is the [queue] table: retries and lifetime of outgoing mail.
type Queue struct{}

// validateOutbound checks [relay] and [queue] beyond what Validate does;
// each error names the key and the fix.
func (c *Config) validateOutbound() []error { return nil }
