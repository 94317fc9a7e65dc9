package queue

import (
	"testing"

	"mailroom/internal/mailtest"
)

// TestMain fails the run on any panic that a worker of these tests
// recovered (the harness gives the queues mailtest.Panics).
func TestMain(m *testing.M) { mailtest.Main(m) }
