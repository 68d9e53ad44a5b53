package cli

import (
	"bytes"
	"strings"
	"testing"

	weirv1 "github.com/weirstream/weir/proto/weir/v1"
)

func TestStatusShowsTheWaitForSlots(t *testing.T) {
	s := &weirv1.JobSummary{JobId: "j", JobName: "fraud-detection", State: weirv1.JobState_JOB_STATE_CREATED,
		SlotWait: &weirv1.SlotWait{SlotsNeeded: 5, SlotsFree: 3, SinceMs: 1000}}
	if got := stateText(s); got != "WAITING FOR SLOTS (needs 5, 3 free)" {
		t.Fatalf("stateText = %q", got)
	}
	var b bytes.Buffer
	printStatus(&b, &weirv1.JobStatus{Summary: s})
	for _, want := range []string{"Job j (fraud-detection): WAITING FOR SLOTS (needs 5, 3 free)",
		"state CREATED, waiting for slots since", "no slot timeout"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
	s.SlotWait = nil
	if got := stateText(s); got != "CREATED" {
		t.Fatalf("stateText without a wait = %q", got)
	}
}

// A job running again at its previous parallelism after a fallback is no
// successful rescale, and the savepoint is named either way.
func TestRescaleOutcome(t *testing.T) {
	status := func(phase weirv1.RescalePhase, p int32) *weirv1.JobStatus {
		return &weirv1.JobStatus{
			Summary: &weirv1.JobSummary{State: weirv1.JobState_JOB_STATE_RUNNING, Parallelism: p},
			Rescale: &weirv1.RescaleStatus{FromParallelism: 2, ToParallelism: 4, Phase: phase, Reason: "it needs 4 slots, 2 free"}}
	}
	line, err := rescaleOutcome("j", 4, "/sp/1", status(weirv1.RescalePhase_RESCALE_PHASE_DONE, 4))
	if err != nil || line != "job j rescaled to parallelism 4 from savepoint /sp/1" {
		t.Fatalf("done: %q, %v", line, err)
	}
	line, err = rescaleOutcome("j", 4, "/sp/1", status(weirv1.RescalePhase_RESCALE_PHASE_FELL_BACK, 2))
	if err == nil || !strings.Contains(err.Error(), "it needs 4 slots, 2 free") ||
		line != "job j runs at parallelism 2, not 4, from savepoint /sp/1" {
		t.Fatalf("fell back: %q, %v", line, err)
	}
	ended := status(weirv1.RescalePhase_RESCALE_PHASE_ABANDONED, 2)
	ended.Summary.State, ended.Summary.Failure = weirv1.JobState_JOB_STATE_FAILED, "boom"
	if _, err := rescaleOutcome("j", 4, "/sp/1", ended); err == nil || !strings.Contains(err.Error(), "/sp/1") ||
		!strings.Contains(err.Error(), "FAILED: boom") {
		t.Fatalf("ended: %v", err)
	}
}
