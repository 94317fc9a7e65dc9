//go:build !race

package mailtest

const raceEnabled = false
