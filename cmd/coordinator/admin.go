package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/recon-ad/recon/internal/cli"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

const checkpointsUsage = `usage: coordinator checkpoints [list] [flags]
       coordinator checkpoints show N|latest [flags]
       coordinator checkpoints rollback N [flags]

Operates a running coordinator's checkpoints over gRPC (--coordinator, with
the same TLS flags as trainers and scorers). Flags may come before or after
the verb and N.

  list        the stored versions, oldest first: version, when it was written
              (UTC), round, the training loss it was written at (-: unknown,
              an older writer), threshold, pinned (kept whatever its age), and
              the error of an entry that does not verify. The default verb.
  show N      one version (latest: the newest that verifies): its model spec,
              feature names, threshold and the rule that set it, round, when
              it was written, lineage, normalizer width, whitening, pinned.
  rollback N  makes the coordinator train on from stored version N: its
              parameters are published at once as a new, higher version
              (scorers swap to it as usual) and N is pinned, so retention
              never prunes it. Prints the new version. The same as
              'coordinator rollback --version N'.

Exit status: 0 done; 1 the coordinator failed or did not answer within
--timeout; 2 a usage error, or a version not stored or not usable.
`

const statusUsage = `usage: coordinator status [flags]

Describes a running coordinator's training over gRPC (--coordinator, with the
same TLS flags as trainers and scorers): its clock, the last completed round
and its loss (the sample-weighted mean training objective), the training state
(warming, learning, settled or maintaining, as the
recon_coordinator_training_state metric names it), the newest checkpoint
version, the alert threshold (none: no alerts yet), the stream records behind
accepted gradients since it started, records trained on per new record, the
model lineage, and each joined worker: when it joined, how long ago its last
accepted gradient came, how many were accepted in its session, and whether it
is benched (rounds no longer wait for it). --json prints the same as an
object, times in RFC 3339.

Exit status: 0 done; 1 the coordinator failed or did not answer within
--timeout; 2 a usage error.
`

const rollbackUsage = `usage: coordinator rollback --version N [flags]

The same as 'coordinator checkpoints rollback N': makes a running coordinator
train on from stored version N; its parameters are published at once as a
new, higher version (scorers swap to it as usual), and N is pinned, so
retention never prunes it.
`

// admin runs the operator commands that talk to a running coordinator:
// checkpoints (the verbs list, show and rollback; no verb lists), rollback
// --version N (the older spelling of checkpoints rollback N) and status.
func admin(ctx context.Context, name string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("coordinator "+name, flag.ContinueOnError)
	usage, jsonHelp := checkpointsUsage, "print JSON instead of text (list: an array; show, rollback: an object)"
	switch name {
	case "rollback":
		usage = rollbackUsage
	case "status":
		usage, jsonHelp = statusUsage, "print JSON instead of text (an object)"
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	addr := fs.String("coordinator", cli.DefaultCoordinator, "coordinator gRPC `address`")
	timeout := fs.Duration("timeout", 10*time.Second, "give up on a coordinator that has not answered a call within this `duration`")
	asJSON := fs.Bool("json", false, jsonHelp)
	var version *uint64
	if name == "rollback" {
		version = fs.Uint64("version", 0, "the stored `version` to train on from (required)")
	}
	tlsFlags := cli.AddClientTLSFlags(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}

	verb, target := "list", uint64(0)
	switch name {
	case "status":
		if len(pos) > 0 {
			return cli.Usagef("unexpected argument %q (coordinator status takes flags only)", pos[0])
		}
		verb = "status"
	case "rollback":
		if len(pos) > 0 {
			return cli.Usagef("unexpected argument %q (the version goes in --version)", pos[0])
		}
		if *version == 0 {
			return cli.Usagef("--version is required (see coordinator checkpoints list)")
		}
		verb, target = "rollback", *version
	default:
		if len(pos) > 0 {
			verb, pos = pos[0], pos[1:]
		}
		switch verb {
		case "help":
			fs.SetOutput(stdout)
			fs.Usage()
			return nil
		case "list":
		case "show", "rollback":
			if len(pos) == 0 {
				return cli.Usagef("%s: which version? (coordinator checkpoints %s N; see coordinator checkpoints list)", verb, verb)
			}
			if target, err = parseVersion(pos[0], verb == "show"); err != nil {
				return cli.Usagef("%s %q: %v", verb, pos[0], err)
			}
			pos = pos[1:]
		default:
			return cli.Usagef("unknown verb %q (want list, show N or rollback N; see coordinator checkpoints -h)", verb)
		}
		if len(pos) > 0 {
			return cli.Usagef("%s: unexpected argument %q", verb, pos[0])
		}
	}

	creds, err := tlsFlags.DialOption()
	if err != nil {
		return err
	}
	// A checkpoint holds the parameters, optimizer state and whitening:
	// wide models exceed gRPC's default 4 MiB limit on what a client takes.
	conn, err := grpc.NewClient(*addr, cli.CoordinatorDialOptions(creds)...)
	if err != nil {
		return cli.Usagef("--coordinator %q: %v", *addr, err)
	}
	defer conn.Close()
	a := &adminClient{c: reconv1.NewCoordinatorClient(conn), addr: *addr, timeout: *timeout}
	switch verb {
	case "list":
		return a.list(ctx, stdout, *asJSON)
	case "show":
		return a.show(ctx, stdout, target, *asJSON)
	case "status":
		return a.status(ctx, stdout, *asJSON)
	default:
		return a.rollback(ctx, stdout, target, *asJSON)
	}
}

// parseInterspersed parses the flags in args wherever they stand (the
// standard flag package stops at the first argument that is not one) and
// returns the other arguments in order. A flag that takes a value and is
// not written --name=value takes the argument after it; everything after
// "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // -h, or an unknown flag cli.Parse reports
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if err := cli.Parse(fs, flags); err != nil {
		return nil, err
	}
	return pos, nil
}

// parseVersion reads a version argument: a positive integer, or (when
// latest is allowed) "latest", returned as 0.
func parseVersion(s string, latest bool) (uint64, error) {
	if latest && s == "latest" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		if latest {
			return 0, errors.New("want a version number (1 or more) or latest")
		}
		return 0, errors.New("want a version number (1 or more)")
	}
	return v, nil
}

// adminClient makes the operator commands' calls, each bounded by timeout
// and waiting that long for a coordinator that is not reachable yet.
type adminClient struct {
	c       reconv1.CoordinatorClient
	addr    string
	timeout time.Duration
}

// callErr turns a failed call's error into one line: a coordinator that
// did not answer in time says so, with gRPC's last connection error.
func (a *adminClient) callErr(err error) error {
	st := status.Convert(err)
	switch st.Code() {
	case codes.DeadlineExceeded, codes.Unavailable:
		return fmt.Errorf("coordinator %s did not answer within %v: %s", a.addr, a.timeout, st.Message())
	}
	return fmt.Errorf("coordinator %s: %s: %s", a.addr, st.Code(), st.Message())
}

func (a *adminClient) listCheckpoints(ctx context.Context) ([]*reconv1.CheckpointInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	resp, err := a.c.ListCheckpoints(ctx, &reconv1.ListCheckpointsRequest{}, grpc.WaitForReady(true))
	if err != nil {
		return nil, a.callErr(err)
	}
	return resp.GetCheckpoints(), nil
}

func (a *adminClient) getCheckpoint(ctx context.Context, v uint64) (*reconv1.Checkpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	return a.c.GetCheckpoint(ctx, &reconv1.GetCheckpointRequest{Version: v}, grpc.WaitForReady(true))
}

// listEntry is one line of checkpoints list (and its --json element).
type listEntry struct {
	Version   uint64     `json:"version"`
	CreatedAt *time.Time `json:"created_at,omitempty"` // absent where the version could not be read
	Round     uint64     `json:"round"`
	Loss      float64    `json:"loss"` // 0: unknown (an older writer)
	Threshold float64    `json:"threshold"`
	Pinned    bool       `json:"pinned"`
	Error     string     `json:"error,omitempty"` // the entry does not verify
}

func (a *adminClient) list(ctx context.Context, w io.Writer, asJSON bool) error {
	infos, err := a.listCheckpoints(ctx)
	if err != nil {
		return err
	}
	entries := make([]listEntry, 0, len(infos))
	for _, ci := range infos {
		e := listEntry{Version: ci.GetVersion(), Round: ci.GetRound(), Loss: ci.GetLoss(), Threshold: ci.GetThreshold(), Pinned: ci.GetPinned(), Error: ci.GetError()}
		switch {
		case ci.GetCreatedAt() != nil:
			e.CreatedAt = utc(ci.GetCreatedAt())
		case e.Error == "":
			// An older coordinator's list does not carry the write time:
			// read it from the version. One pruned since the list was
			// taken is shown without it.
			c, err := a.getCheckpoint(ctx, e.Version)
			switch {
			case err == nil && c.GetCreatedAt() != nil:
				t := c.GetCreatedAt().AsTime().UTC()
				e.CreatedAt = &t
			case err != nil && status.Code(err) != codes.NotFound && status.Code(err) != codes.DataLoss:
				return a.callErr(err)
			}
		}
		entries = append(entries, e)
	}
	if asJSON {
		return writeJSON(w, entries)
	}
	fmt.Fprintf(w, "%10s  %-20s %12s %12s %14s  %s\n", "version", "created", "round", "loss", "threshold", "")
	for _, e := range entries {
		created, loss := "-", "-"
		if e.CreatedAt != nil {
			created = e.CreatedAt.Format(time.RFC3339)
		}
		if e.Loss != 0 {
			loss = strconv.FormatFloat(e.Loss, 'g', 6, 64)
		}
		var note []string
		if e.Pinned {
			note = append(note, "pinned")
		}
		if e.Error != "" {
			note = append(note, "DAMAGED: "+e.Error)
		}
		fmt.Fprintf(w, "%10d  %-20s %12d %12s %14.6g  %s\n", e.Version, created, e.Round, loss, e.Threshold, strings.Join(note, " "))
	}
	return nil
}

// details is checkpoints show's --json object.
type details struct {
	Version       uint64            `json:"version"`
	CreatedAt     *time.Time        `json:"created_at,omitempty"`
	Round         uint64            `json:"round"`
	Lineage       string            `json:"lineage,omitempty"`
	Pinned        bool              `json:"pinned"`
	Threshold     float64           `json:"threshold"` // 0: none set yet
	ThresholdRule string            `json:"threshold_rule,omitempty"`
	Quantile      float64           `json:"quantile,omitempty"`
	Spec          json.RawMessage   `json:"spec"` // a recon.v1.ModelSpec, as --spec-file reads it
	Features      []string          `json:"features"`
	Normalizer    int               `json:"normalizer_width"` // 0: records are not standardized
	Records       int64             `json:"normalizer_records"`
	Whitening     int               `json:"whitening_width"` // 0: plain squared error
	Params        int               `json:"params"`
	Optimizer     string            `json:"optimizer,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
}

func (a *adminClient) show(ctx context.Context, w io.Writer, v uint64, asJSON bool) error {
	c, err := a.getCheckpoint(ctx, v)
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound:
		if v == 0 {
			return errors.New("show latest: the coordinator has no checkpoint yet")
		}
		return cli.Permanent(fmt.Errorf("show: version %d is not stored (see coordinator checkpoints list)", v))
	case codes.DataLoss:
		return cli.Permanent(fmt.Errorf("show: version %d does not verify: %s", v, status.Convert(err).Message()))
	default:
		return a.callErr(err)
	}
	infos, err := a.listCheckpoints(ctx)
	if err != nil {
		return err
	}
	d := details{Version: c.GetVersion(), Round: c.GetRound(), Lineage: c.GetLineage(), Threshold: c.GetThreshold(),
		ThresholdRule: c.GetThresholdRule(), Quantile: c.GetQuantile(), Features: c.GetSpec().GetFeatures(),
		Normalizer: len(c.GetNormalizer().GetMean()), Records: c.GetNormalizer().GetCount(), Params: len(c.GetParams()),
		Optimizer: c.GetOptimizer().GetKind(), Metadata: c.GetMetadata()}
	if n := len(c.GetWhitening()); n > 0 {
		d.Whitening = int(math.Round(math.Sqrt(float64(n)))) // p x p
	}
	if c.GetCreatedAt() != nil {
		t := c.GetCreatedAt().AsTime().UTC()
		d.CreatedAt = &t
	}
	for _, ci := range infos {
		if ci.GetVersion() == d.Version {
			d.Pinned = ci.GetPinned()
		}
	}
	if asJSON {
		if d.Spec, err = (protojson.MarshalOptions{UseProtoNames: true}).Marshal(c.GetSpec()); err != nil {
			return err
		}
		if d.Features == nil {
			d.Features = []string{}
		}
		return writeJSON(w, d)
	}
	row := func(k, f string, a ...any) { fmt.Fprintf(w, "%-12s "+f+"\n", append([]any{k}, a...)...) }
	row("version", "%d", d.Version)
	created := "unknown"
	if d.CreatedAt != nil {
		created = d.CreatedAt.Format(time.RFC3339)
	}
	row("created", "%s", created)
	row("round", "%d", d.Round)
	row("lineage", "%s", orDash(d.Lineage))
	row("pinned", "%v", d.Pinned)
	switch {
	case d.Threshold == 0:
		row("threshold", "none set yet (no alerts)")
	case d.ThresholdRule != "":
		row("threshold", "%.6g (%s)", d.Threshold, d.ThresholdRule)
	default:
		row("threshold", "%.6g", d.Threshold)
	}
	row("spec", "%s", specText(c.GetSpec()))
	if len(d.Features) > 0 {
		row("features", "%s", strings.Join(d.Features, ","))
	} else {
		row("features", "%d, unnamed (positional)", c.GetSpec().GetInput())
	}
	if d.Normalizer > 0 {
		row("normalizer", "width %d, from %d records", d.Normalizer, d.Records)
	} else {
		row("normalizer", "none (records are not standardized)")
	}
	if d.Whitening > 0 {
		row("whitening", "%dx%d precision matrix", d.Whitening, d.Whitening)
	} else {
		row("whitening", "none (the score is the plain squared error)")
	}
	row("params", "%d", d.Params)
	row("optimizer", "%s", orDash(d.Optimizer))
	if len(d.Metadata) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(d.Metadata)) {
			kv = append(kv, k+"="+d.Metadata[k])
		}
		row("metadata", "%s", strings.Join(kv, " "))
	}
	return nil
}

func (a *adminClient) rollback(ctx context.Context, w io.Writer, v uint64, asJSON bool) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	resp, err := a.c.Rollback(ctx, &reconv1.RollbackRequest{Version: v}, grpc.WaitForReady(true))
	switch status.Code(err) {
	case codes.OK:
	case codes.NotFound:
		return cli.Permanent(fmt.Errorf("rollback: version %d is not stored (see coordinator checkpoints list)", v))
	case codes.FailedPrecondition:
		return cli.Permanent(fmt.Errorf("rollback: version %d cannot be trained on: %s", v, status.Convert(err).Message()))
	default:
		return a.callErr(err)
	}
	if asJSON {
		return writeJSON(w, struct {
			From    uint64 `json:"from"`
			Version uint64 `json:"version"`
		}{v, resp.GetVersion()})
	}
	fmt.Fprintf(w, "rolled back to version %d: published as version %d; %d is pinned\n", v, resp.GetVersion(), v)
	return nil
}

// statusJSON is coordinator status's --json object: the StatusResponse,
// with times in RFC 3339 and 64-bit counts as JSON numbers.
type statusJSON struct {
	Time                   time.Time      `json:"time"`
	Round                  uint64         `json:"round"` // the last completed round
	Loss                   float64        `json:"loss"`  // its loss (0: no round yet)
	State                  string         `json:"state"`
	Version                uint64         `json:"version"`
	Threshold              float64        `json:"threshold"` // 0: none set yet
	Records                uint64         `json:"records"`
	PresentationsPerRecord float64        `json:"presentations_per_record"`
	Lineage                string         `json:"lineage"`
	Workers                []workerStatus `json:"workers"` // sorted by id
}

type workerStatus struct {
	ID             string     `json:"id"`
	JoinedAt       *time.Time `json:"joined_at,omitempty"`
	LastGradientAt *time.Time `json:"last_gradient_at,omitempty"` // absent: none accepted yet
	Gradients      uint64     `json:"gradients"`
	Benched        bool       `json:"benched"`
}

func (a *adminClient) status(ctx context.Context, w io.Writer, asJSON bool) error {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	resp, err := a.c.Status(ctx, &reconv1.StatusRequest{}, grpc.WaitForReady(true))
	switch status.Code(err) {
	case codes.OK:
	case codes.Unimplemented:
		return fmt.Errorf("coordinator %s does not serve Status (a version older than this command)", a.addr)
	default:
		return a.callErr(err)
	}
	st := statusJSON{Time: resp.GetTime().AsTime().UTC(), Round: resp.GetRound(), Loss: resp.GetLoss(), State: resp.GetState(),
		Version: resp.GetVersion(), Threshold: resp.GetThreshold(), Records: resp.GetRecords(),
		PresentationsPerRecord: resp.GetPresentationsPerRecord(), Lineage: resp.GetLineage(), Workers: []workerStatus{}}
	for _, ws := range resp.GetWorkers() {
		st.Workers = append(st.Workers, workerStatus{ID: ws.GetId(), JoinedAt: utc(ws.GetJoinedAt()), LastGradientAt: utc(ws.GetLastGradientAt()),
			Gradients: ws.GetGradients(), Benched: ws.GetBenched()})
	}
	if asJSON {
		return writeJSON(w, st)
	}
	row := func(k, f string, a ...any) { fmt.Fprintf(w, "%-14s "+f+"\n", append([]any{k}, a...)...) }
	row("time", "%s", st.Time.Format(time.RFC3339))
	row("round", "%d", st.Round)
	if st.Loss == 0 {
		row("loss", "- (no round yet)")
	} else {
		row("loss", "%.6g", st.Loss)
	}
	row("state", "%s", orDash(st.State))
	row("version", "%d", st.Version)
	if st.Threshold == 0 {
		row("threshold", "none set yet (no alerts)")
	} else {
		row("threshold", "%.6g", st.Threshold)
	}
	row("records", "%d", st.Records)
	row("presentations", "%.3g per record", st.PresentationsPerRecord)
	row("lineage", "%s", orDash(st.Lineage))
	row("workers", "%d", len(st.Workers))
	if len(st.Workers) == 0 {
		return nil
	}
	fmt.Fprintf(w, "  %-20s %-20s %-15s %10s  %s\n", "worker", "joined", "last gradient", "gradients", "")
	for _, ws := range st.Workers {
		joined, last := "-", "-"
		if ws.JoinedAt != nil {
			joined = ws.JoinedAt.Format(time.RFC3339)
		}
		if ws.LastGradientAt != nil {
			last = st.Time.Sub(*ws.LastGradientAt).Round(time.Millisecond).String() + " ago"
		}
		note := ""
		if ws.Benched {
			note = "benched"
		}
		fmt.Fprintf(w, "  %-20s %-20s %-15s %10d  %s\n", ws.ID, joined, last, ws.Gradients, note)
	}
	return nil
}

// specText describes a model spec on one line: variant and widths, the
// activations, loss and tying, and the variant's own settings.
func specText(s *reconv1.ModelSpec) string {
	widths := []string{strconv.Itoa(int(s.GetInput()))}
	for _, h := range s.GetHidden() {
		widths = append(widths, strconv.Itoa(int(h)))
	}
	widths = append(widths, strconv.Itoa(int(s.GetCode())))
	tied := "untied"
	if s.GetTied() {
		tied = "tied"
	}
	out := fmt.Sprintf("%s %s, activation %s, code %s, output %s, loss %s, %s", orDash(s.GetVariant()), strings.Join(widths, "-"),
		orDash(s.GetActivation()), orDash(s.GetCodeActivation()), orDash(s.GetOutput()), orDash(s.GetLoss()), tied)
	switch s.GetVariant() {
	case "denoising":
		if s.GetNoise() == "masking" {
			out += fmt.Sprintf(", masking noise p=%g", s.GetMaskProb())
		} else {
			out += fmt.Sprintf(", %s noise sigma=%g", orDash(s.GetNoise()), s.GetNoiseSigma())
		}
	case "sparse-l1":
		out += fmt.Sprintf(", l1=%g", s.GetL1())
	case "sparse-kl":
		out += fmt.Sprintf(", rho=%g beta=%g momentum=%g", s.GetSparseRho(), s.GetSparseBeta(), s.GetSparseMomentum())
	case "contractive":
		out += fmt.Sprintf(", contractive=%g", s.GetContractive())
	case "variational":
		out += fmt.Sprintf(", beta=%g warmup=%d", s.GetBeta(), s.GetWarmup())
	}
	return out
}

// utc is ts in UTC, nil where it is not set.
func utc(ts *timestamppb.Timestamp) *time.Time {
	if ts == nil {
		return nil
	}
	t := ts.AsTime().UTC()
	return &t
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
