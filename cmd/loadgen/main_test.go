package main

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/recon-ad/recon/internal/cli"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/pkg/stream"
	"github.com/recon-ad/recon/pkg/synth"
)

// TestRunRefuses: flags of the other mode, and bad replay flags, are usage
// errors before anything is produced; a synthetic flag set only in the
// environment is ignored by a replay.
func TestRunRefuses(t *testing.T) {
	csvFile := write(t, "a.csv", "f0,f1,label\n1,2,0\n")
	for _, tc := range []struct {
		name  string
		env   []string // a RECON_* variable and its value
		args  []string
		usage bool   // a usage error
		err   string // a substring of the error
	}{
		{name: "synthetic flag with --input", args: []string{"--input", csvFile, "--rank", "2", "--noise", "0.1"}, usage: true,
			err: "--rank, --noise: for synthetic records only, not for --input"},
		{name: "width with --input", args: []string{"--input", csvFile, "--features", "2"}, usage: true,
			err: "--features: for synthetic records only, not for --input (--columns picks a file's features)"},
		{name: "replay flags without --input", args: []string{"--columns", "f0", "--passes", "2"}, usage: true,
			err: "--columns, --passes: for replaying a file only: they need --input"},
		{name: "bad order", args: []string{"--input", csvFile, "--order", "random"}, usage: true, err: `--order "random"`},
		{name: "negative passes", args: []string{"--input", csvFile, "--passes", "-1"}, usage: true, err: "--passes -1"},
		{name: "empty column name", args: []string{"--input", csvFile, "--columns", "f0,,f1"}, usage: true, err: "an empty column name"},
		{name: "unknown extension", args: []string{"--input", write(t, "a.txt", "f0\n1\n")}, usage: true, err: "--input-format"},
		{name: "missing column", args: []string{"--input", csvFile, "--columns", "f0,f7"}, err: `--columns: a.csv has no column "f7" (its columns: f0, f1, label)`},
		{name: "explicit label missing", args: []string{"--input", write(t, "b.csv", "f0\n1\n"), "--label", "label"}, err: `--label: b.csv has no column "label"`},
		{name: "outside share of one", args: []string{"--outside", "1"}, usage: true, err: "--anomalies and --outside in [0,1)"},
		{name: "no noise", args: []string{"--noise", "0"}, usage: true, err: "--noise > 0"},
		{name: "too wide", args: []string{"--features", "90000"}, usage: true, err: "--features 90000: synthetic records are at most 4096 features wide"},
		{name: "environment's synthetic flag ignored", env: []string{"RECON_RANK", "2"}, args: []string{"--input", "/nonexistent/a.csv"}, err: "--input: open /nonexistent/a.csv"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != nil {
				t.Setenv(tc.env[0], tc.env[1])
			}
			// Should a refusal fail, the run ends soon against no broker.
			args := append([]string{"--brokers", "127.0.0.1:1", "--duration", "2s"}, tc.args...)
			err := run(context.Background(), args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.err) || errors.Is(err, cli.ErrUsage) != tc.usage {
				t.Fatalf("error %v, want one containing %q (usage error: %v)", err, tc.err, tc.usage)
			}
		})
	}
}

// TestReplayToKafka: a replay of a small CSV file twice reaches the topic
// in file order, each record with its row's values, key and headers, and
// the summary line says so.
func TestReplayToKafka(t *testing.T) {
	brokers := testkit.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := "loadgen-replay-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := stream.EnsureTopics(ctx, brokers, map[string]int{topic: 1}); err != nil {
		t.Fatal(err)
	}
	path := write(t, "small.csv", "id,f0,f1,f2,label\n"+
		"h-0,0.7741935484,0.001132075472,0.1375711575,0\n"+
		"h-1,0.247311828,-3,1e-05,0\n"+
		"h-2,1,2,3,1\n"+
		"h-3,0,0,0,0\n")
	want := []struct{ key, value, truth string }{
		{"h-0", `{"f0":0.7741935484,"f1":0.001132075472,"f2":0.1375711575}`, "normal"},
		{"h-1", `{"f0":0.247311828,"f1":-3,"f2":1e-05}`, "normal"},
		{"h-2", `{"f0":1,"f1":2,"f2":3}`, "anomaly"},
		{"h-3", `{"f0":0,"f1":0,"f2":0}`, "normal"},
	}
	var stderr strings.Builder
	err := run(ctx, []string{"--brokers", strings.Join(brokers, ","), "--topic", topic, "--input", path,
		"--key-column", "id", "--format", "json-object", "--passes", "2", "--rate", "0"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	summary := "loadgen: 4 rows read from small.csv, 8 records produced to " + topic + " in 2 passes, "
	if !strings.HasPrefix(stderr.String(), summary) || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("summary %q, want one line starting %q", stderr.String(), summary)
	}

	// Every record is acknowledged by now: reading them back is quick.
	ctx, cancel = context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 50 * time.Millisecond})
	defer r.Close()
	for i := range 2 * len(want) {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read record %d of %d: %v", i, 2*len(want), err)
		}
		row, w := i%len(want), want[i%len(want)]
		headers := map[string]string{}
		for _, h := range m.Headers {
			headers[h.Key] = string(h.Value)
		}
		if string(m.Key) != w.key || string(m.Value) != w.value || len(headers) != 2 ||
			headers[TruthHeader] != w.truth || headers[RowHeader] != strconv.Itoa(row) {
			t.Errorf("record %d: key %q value %s headers %v; want row %d: key %q value %s %s=%s",
				i, m.Key, m.Value, headers, row, w.key, w.value, TruthHeader, w.truth)
		}
	}
	if lag, err := r.ReadLag(ctx); err != nil || lag != 0 {
		t.Errorf("after %d records, %d more (%v): want exactly two passes", 2*len(want), lag, err)
	}
}

// TestSyntheticAnomaliesLieOutside: at 6 features every injected anomaly
// lies outside the region of 99.99% of normal records, and about that share
// of the normal records inside it; with --outside 0 some anomalies do not.
func TestSyntheticAnomaliesLieOutside(t *testing.T) {
	const p, rank, noise = 6, 3, 0.4
	basis := synth.Basis(rand.New(rand.NewPCG(1, 0xba5e)), rank, p) // as synthetic
	region := synth.NewRegion(basis, rank, noise, 0.9999)
	var names []string
	for i := range p {
		names = append(names, "f"+strconv.Itoa(i))
	}
	codec, err := stream.NewCodec(stream.JSONObject, names)
	if err != nil {
		t.Fatal(err)
	}
	for _, outside := range []float64{0.9999, 0} {
		src := synthetic(stream.JSONObject, p, rank, noise, 0.2, outside, synth.Kinds, 1, 42)
		rec := make([]float64, p)
		anomalies, inside, normalOutside := 0, 0, 0
		const n = 30000
		for range n {
			m, _ := src.next()
			if err := codec.Decode(rec, m.Value); err != nil {
				t.Fatal(err)
			}
			normal := string(m.Headers[0].Value) == "normal"
			if !normal {
				anomalies++
			}
			switch in := region.Contains(rec); {
			case normal && !in:
				normalOutside++
			case !normal && in:
				inside++
			}
		}
		t.Logf("--outside %v: %d anomalies, %d inside the region; %d normal records outside", outside, anomalies, inside, normalOutside)
		if anomalies < n/6 || (outside > 0) != (inside == 0) || normalOutside > 10 {
			t.Errorf("--outside %v: %d anomalies of %d records, %d inside the region, %d normal records outside", outside, anomalies, n, inside, normalOutside)
		}
	}
}

func TestKeysCycleThroughDevices(t *testing.T) {
	src := keyed(synthetic(stream.JSONArray, 4, 2, 0.1, 0, 0, synth.Kinds, 1, 1), 3)
	var got []string
	for range 7 {
		m, ok := src.next()
		if !ok {
			t.Fatal("the synthetic source ended")
		}
		got = append(got, string(m.Key))
	}
	want := []string{"sensor-0", "sensor-1", "sensor-2", "sensor-0", "sensor-1", "sensor-2", "sensor-0"}
	if !slices.Equal(got, want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
}
