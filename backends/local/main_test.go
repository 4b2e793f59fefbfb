package local

import (
	"testing"

	"go.uber.org/goleak"
)

// The commit leader is a goroutine that must end once its queue is empty.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
