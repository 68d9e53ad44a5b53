package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// The stateheavy section is scenario (a) of the throughput section (one
// subtask, fully chained, one core) with the fraud detector's parameters
// small=1000 large=1000 timeout=1h: every transaction then clears and sets
// its account's flag, deletes its timer and registers a new one, so every
// event writes keyed state and timers. It runs at each -stateheavy-accounts
// size and prints the top of the TaskManager's CPU profile. At 10 M
// accounts most events of a short run still create their account's state;
// -stateheavy-events sets the run's length: the rate is the job's events
// over its whole life, deploy and final checkpoint included (about 0.3 s),
// so a short run understates it. -stateheavy-backends runs it on each
// state backend (the TaskManager's --state-backend), pebble with
// -stateheavy-state-memory (--state-memory): without a memory limit a
// TaskManager's default is 64 MiB per slot, and at 10 M accounts even
// 512 MiB gives about 85 k events/s against 1.4 M at 2 GiB.

func (b *bench) stateHeavySection(accounts []int64, events int64, profileDir string, backends []string, memory string) error {
	if err := os.MkdirAll(profileDir, 0o755); err != nil {
		return err
	}
	for _, backend := range backends {
		if err := b.stateHeavy(accounts, events, profileDir, backend, memory); err != nil {
			return fmt.Errorf("%s backend: %w", backend, err)
		}
	}
	return nil
}

func (b *bench) stateHeavy(accounts []int64, events int64, profileDir, backend, memory string) error {
	s := scenario{name: "(a) 1 subtask, chained, 1 core", taskManagers: 1, slots: 1, parallelism: 1, env: []string{"GOMAXPROCS=1"}}
	label := backend + " backend"
	if backend != "memory" { // memory is the default, also of binaries before the flag
		s.tmArgs = []string{"--state-backend", backend}
		if backend == "pebble" && memory != "" {
			s.tmArgs = append(s.tmArgs, "--state-memory", memory)
			label += " (--state-memory " + memory + ")"
		}
	}
	fmt.Printf("fraud-detection, state-heavy (small=1000 large=1000 timeout=1h), %s, %s, %d events per run\n",
		s.name, label, events)
	for _, n := range accounts {
		profile, _ := filepath.Abs(filepath.Join(profileDir, fmt.Sprintf("taskmanager-stateheavy-%s-%d.pprof", backend, n)))
		c, err := start(b.weir, s, profile)
		if err != nil {
			return err
		}
		st, err := runJob(c, 1, map[string]string{"rate": "0", "count": fmt.Sprint(events), "accounts": fmt.Sprint(n),
			"small": "1000", "large": "1000", "timeout": "1h"}, 20*time.Minute)
		c.Stop()
		if err != nil {
			return fmt.Errorf("%d accounts: %w", n, err)
		}
		in := operatorRecordsIn(st, "fraud-detector")
		secs := float64(st.EndTimeMs-st.StartTimeMs) / 1000
		if in != events || secs <= 0 {
			return fmt.Errorf("%d accounts: detector saw %d records in %.3fs, want %d", n, in, secs, events)
		}
		rate := float64(in) / secs
		fmt.Printf("%d accounts: %.2f M events/s\n", n, rate/1e6)
		goal := "4 M events/s at 100k"
		if backend == "pebble" {
			goal = "1 M events/s at 10M"
		}
		b.add("stateheavy", fmt.Sprintf("%s accounts, %s, 1 core: max throughput", keyCount(n), label),
			fmt.Sprintf("%.2f M events/s", rate/1e6), goal)
		top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount", "12", b.weir, profile).Output()
		if err == nil {
			fmt.Printf("  CPU profile (%s):\n", profile)
			for _, l := range strings.Split(string(top), "\n") {
				if strings.TrimSpace(l) != "" && !strings.HasPrefix(l, "File:") && !strings.HasPrefix(l, "Build ID:") && !strings.HasPrefix(l, "Type:") && !strings.HasPrefix(l, "Time:") {
					fmt.Println("    " + l)
				}
			}
		}
	}
	return nil
}
