package engine

import "testing"

// TestJobTargetExecOptions checks that a target's own ExecOptions replace the
// job's, and that a bandwidth limit is shared out between a target's
// workers so that the target as a whole stays within it.
func TestJobTargetExecOptions(t *testing.T) {
	src := t.TempDir()
	own := ExecOptions{Transfers: 9, Retries: 7, BWLimit: 8 << 20}
	j, err := NewJob(JobOptions{
		Source:  src,
		Workers: 4,
		Exec:    ExecOptions{Transfers: 2, Retries: 1, BWLimit: 4 << 20},
		Targets: []JobTarget{
			{Name: "shared", Backend: newFake()},
			{Name: "own", Backend: newFake(), Exec: &own},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		target           string
		transfers, tries int
		bw               int64
	}{
		{"shared", 2, 1, 1 << 20},
		{"own", 9, 7, 2 << 20},
	}
	for i, tc := range tests {
		got := j.targets[i].execOpts
		if j.targets[i].name != tc.target || got.Transfers != tc.transfers || got.Retries != tc.tries || got.BWLimit != tc.bw {
			t.Errorf("target %s: transfers %d, retries %d, bwlimit %d; want %d, %d, %d",
				j.targets[i].name, got.Transfers, got.Retries, got.BWLimit, tc.transfers, tc.tries, tc.bw)
		}
	}
}
