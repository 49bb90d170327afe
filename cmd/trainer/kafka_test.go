package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/coordinator"
	"github.com/recon-ad/recon/internal/procs"
	"github.com/recon-ad/recon/internal/testenv"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/internal/trainer"
	"github.com/recon-ad/recon/pkg/ae"
	"github.com/recon-ad/recon/pkg/stream"
)

// TestTrainerRejoinsOverAStuckPartition: a member of the trainers' group
// holds a partition and never commits (as kfake keeps a member that died
// while joining); once its rounds are being accepted, `trainer run`
// notices, names the holder and rejoins the group, and goes on training.
func TestTrainerRejoinsOverAStuckPartition(t *testing.T) {
	const p = 8
	brokers := testkit.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := stream.EnsureTopics(ctx, brokers, map[string]int{"events": 2}); err != nil {
		t.Fatal(err)
	}
	src := trainer.NewSynth(1, 5, p, 2, 0.2, 0)
	codec, _ := stream.NewCodec(stream.JSONArray, []string{"f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"})
	wr, err := stream.NewWriter(stream.WriterConfig{Brokers: brokers, Topic: "events"})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []stream.Record
	rec := make([]float64, p)
	for i := 0; i < 4000; i++ {
		if _, err := src.Read(rec); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, stream.Record{Key: []byte(strconv.Itoa(i)), Value: codec.Encode(nil, rec)})
	}
	if err := wr.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	wr.Close()
	squat, err := stream.NewReader(stream.ReaderConfig{Brokers: brokers, Topic: "events", Group: "recon-trainer", StartFirst: true})
	if err != nil {
		t.Fatal(err)
	}
	defer squat.Close()
	if _, err := squat.Batch(ctx); err != nil { // joined, holding both partitions for now
		t.Fatal(err)
	}

	spec := ae.Spec{Input: p, Hidden: []int{16}, Code: 2, Activation: ae.Tanh, CodeActivation: ae.Tanh, Output: ae.Linear}
	co := testenv.StartCoordinator(t, coordinator.Config{Spec: spec, LR: 3e-3, Batch: 128, Holdout: 0.2, WarmupRecords: 500,
		CheckpointRounds: 50, Deadline: 5 * time.Second})
	go func() { _ = co.Server.Run(ctx) }()
	dir := t.TempDir()
	tr := procs.New(binDir, dir, "trainer", "trainer", "run", "--source", "kafka", "--brokers", strings.Join(brokers, ","),
		"--topic", "events", "--features", strconv.Itoa(p), "--coordinator", co.Addr, "--id", "t1", "--stuck-after", "3s", "--metrics-listen", "") // ready: a round accepted in every 1 s
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	defer tr.Kill()
	// The trainer's member id in the group (its client id is trainer@…).
	admin := stream.Security{}.Admin(brokers)
	defer admin.Close()
	member := func() string {
		h, _, err := admin.Holders(ctx, "recon-trainer", "events")
		if err != nil {
			return ""
		}
		for _, m := range h {
			if strings.HasPrefix(m, "trainer@") {
				return m
			}
		}
		return ""
	}
	first := ""
	if !testkit.Until(ctx, func() bool { first = member(); return first != "" || !tr.Running() }) || first == "" {
		t.Fatalf("the trainer never held a partition:\n%s", tr.LogText())
	}
	re := `level=WARN .*kind=stuck_partition group=recon-trainer topic=events partition=\d .* held_by="[^"]*@[^"]*/\d+@[^"]* \([^"]+\)" group_state=Stable`
	if !testkit.Until(ctx, func() bool { return regexp.MustCompile(re).MatchString(tr.LogText()) || !tr.Running() }) || !tr.Running() {
		t.Fatalf("the trainer did not report the stuck partition:\n%s", tr.LogText())
	}
	// It rejoined: the group knows it under a new member id.
	if !testkit.Until(ctx, func() bool { m := member(); return m != "" && m != first }) {
		t.Fatalf("the trainer is still member %s after reporting the stuck partition:\n%s", first, tr.LogText())
	}
	// It trains on after the rejoin: more rounds are accepted.
	rounds := co.Server.Snapshot().Round
	if !testkit.Until(ctx, func() bool { return co.Server.Snapshot().Round >= rounds+20 || !tr.Running() }) || !tr.Running() {
		t.Fatalf("training stopped after the rejoin at round %d:\n%s", co.Server.Snapshot().Round, tr.LogText())
	}
	if err := tr.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tr.Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("the trainer did not stop within 10 s of SIGTERM")
	}
	if err := tr.ExitErr(); err != nil {
		t.Errorf("trainer on SIGTERM: %v\n%s", err, tr.LogText())
	}
}
