package coordinator

import (
	"context"
	"errors"
	"io"
	"math"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/recon-ad/recon/internal/calib"
	"github.com/recon-ad/recon/internal/checkpoint"
	"github.com/recon-ad/recon/internal/round"
	"github.com/recon-ad/recon/pkg/ae"
	reconv1 "github.com/recon-ad/recon/proto/recon/v1"
)

// sessionBuffer is how many messages a worker may have queued; a worker
// further behind is cut off and rejoins.
const sessionBuffer = 8

// Train implements the worker session.
func (s *Server) Train(stream reconv1.Coordinator_TrainServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	join := first.GetJoin()
	if join == nil || join.GetWorkerId() == "" {
		return status.Error(codes.InvalidArgument, "the first message of a Train session must be Join with a worker id")
	}
	id := join.GetWorkerId()
	if why := s.joinMismatch(join); why != "" {
		s.metrics.refused.Inc()
		s.log.Warn("worker refused: its record schema does not match the model's", "worker", id, "format", join.GetFormat(), "why", why)
		return status.Error(codes.FailedPrecondition, why)
	}
	ss := &session{id: id, out: make(chan *reconv1.CoordinatorMessage, sessionBuffer),
		instance: join.GetInstance(), peer: peerAddr(stream.Context()), since: time.Now()}

	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return errStopped
	}
	if old := s.sessions[id]; old != nil {
		if old.instance != "" && ss.instance != "" && old.instance != ss.instance && s.machine.Joined(id) {
			// Another process with this id while the holder is live: the
			// two would evict each other at every reconnect.
			s.mu.Unlock()
			s.metrics.refused.Inc()
			s.log.Warn("worker refused: another process holds a live session with its id", "worker", id,
				"peer", ss.peer, "holder", old.peer, "holder_since", old.since.Format(time.RFC3339))
			return status.Errorf(codes.AlreadyExists,
				"worker id %q is in use by another process (%s, joined %s, %s ago); give each trainer process its own --id (if that process has stopped, its session ends within the %v lease)",
				id, old.peer, old.since.Format(time.RFC3339), ss.since.Sub(old.since).Round(time.Second), s.cfg.Lease)
		}
		s.endSession(id) // a reconnecting worker replaces its old session
	}
	s.sessions[id] = ss
	s.machine.Join(id, time.Now())
	ss.out <- s.welcome()
	if s.norm == nil && !s.warmFrom[id] {
		ss.out <- &reconv1.CoordinatorMessage{Msg: &reconv1.CoordinatorMessage_Warmup{Warmup: &reconv1.WarmupRequest{Records: uint32(s.cfg.WarmupRecords)}}}
	}
	s.mu.Unlock()
	s.ring()
	s.log.Info("worker joined", "worker", id, "peer", ss.peer, "format", join.GetFormat())

	// Sender: drains the session's queue until the session is ended.
	sendErr := make(chan error, 1)
	go func() {
		for msg := range ss.out {
			if err := stream.Send(msg); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	defer func() {
		s.mu.Lock()
		if s.sessions[id] == ss {
			s.endSession(id)
		}
		s.mu.Unlock()
		s.ring()
		s.log.Info("worker left", "worker", id)
	}()

	recvErr := make(chan error, 1)
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if err := s.handle(ss, msg); err != nil {
				recvErr <- err
				return
			}
		}
	}()
	select {
	case err := <-recvErr:
		if errors.Is(err, io.EOF) || errors.Is(err, errLeave) {
			return nil
		}
		return err
	case err := <-sendErr:
		if err == nil {
			return status.Error(codes.Unavailable, "session ended by the coordinator")
		}
		return err
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
}

var errLeave = errors.New("worker left")

// peerAddr is the address of ctx's gRPC peer ("unknown" without one).
func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return "unknown"
}

// handle processes one message from worker ss.
func (s *Server) handle(ss *session, msg *reconv1.WorkerMessage) error {
	now := time.Now()
	switch m := msg.GetMsg().(type) {
	case *reconv1.WorkerMessage_Leave:
		return errLeave
	case *reconv1.WorkerMessage_Warmup:
		st := m.Warmup.GetStats()
		n, err := ae.RestoreNormalizer(st.GetCount(), st.GetMean(), st.GetM2())
		if err != nil || n.Width() != s.cfg.Spec.Input {
			return status.Errorf(codes.InvalidArgument, "bad warm-up statistics from %s: %v", ss.id, err)
		}
		var mom *calib.Moments
		if pm := m.Warmup.GetMoments(); pm != nil {
			mom = &calib.Moments{Count: pm.GetCount(), Sum: pm.GetSum(), Outer: pm.GetOuter()}
			if mom.Validate(s.cfg.Spec.Input) != nil || mom.Count != n.Count() {
				mom = nil // malformed: the normalizer still counts, the spectrum does without
			}
		}
		s.mu.Lock()
		if s.warm != nil && !s.warmFrom[ss.id] {
			s.warm.Merge(n)
			s.warmFrom[ss.id] = true
			if s.moments != nil && mom != nil {
				if err := s.moments.Merge(mom); err != nil { // Validate above rules it out
					s.log.Warn("warm-up moments not merged: the spectrum does without them", "worker", ss.id, "err", err)
				}
			}
		}
		s.machine.Heartbeat(ss.id, now)
		s.mu.Unlock()
		s.ring()
	case *reconv1.WorkerMessage_Gradient:
		g := m.Gradient
		held := g.GetHeldout()
		if p := s.cfg.Spec.Input; len(held)%p != 0 || len(held) > calib.MaxHeldOutRows*p || !finite(held) {
			held = nil // malformed: the gradient still counts, its held-out records do not
		}
		s.mu.Lock()
		benched := s.machine.Benched(ss.id)
		err := s.machine.Submit(ss.id, g.GetRound(), &round.Gradient{
			Samples: int(min(g.GetSamples(), 1<<40)), Loss: g.GetLoss(), Values: g.GetValues(), Extra: g.GetExtra(),
		}, now)
		if benched && !s.machine.Benched(ss.id) {
			s.log.Info("benched worker sent a gradient in time: rounds wait for it again", "worker", ss.id, "round", g.GetRound())
		}
		reply := &reconv1.GradientReply{Round: g.GetRound(), Accepted: err == nil}
		if err != nil {
			reply.Reason = err.Error()
			s.metrics.rejected.WithLabelValues(string(reasonOf(err))).Inc()
		} else {
			s.roundHeld = append(s.roundHeld, held...)
			s.roundRecs += int(min(g.GetRecords(), 1<<30))
			ss.gradients++
			ss.lastGradient = now
		}
		if s.sessions[ss.id] == ss {
			s.send(ss, &reconv1.CoordinatorMessage{Msg: &reconv1.CoordinatorMessage_Reply{Reply: reply}})
		}
		s.mu.Unlock()
		s.ring()
	default:
		return status.Errorf(codes.InvalidArgument, "unexpected message %T from %s", m, ss.id)
	}
	return nil
}

func finite(v []float64) bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

func reasonOf(err error) round.Rejection {
	var re *round.RejectError
	if errors.As(err, &re) {
		return re.Reason
	}
	return "other"
}

// WatchCheckpoints implements the checkpoint subscription.
func (s *Server) WatchCheckpoints(_ *reconv1.WatchCheckpointsRequest, stream reconv1.Coordinator_WatchCheckpointsServer) error {
	ch := make(chan *reconv1.Checkpoint, 1)
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return errStopped
	}
	if s.latest != nil {
		ch <- s.latest
	}
	s.watchers[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, ch)
		s.mu.Unlock()
	}()
	var last uint64
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				return errStopped
			}
			if c.GetVersion() <= last {
				continue // never send a version that does not grow
			}
			if err := stream.Send(c); err != nil {
				return err
			}
			last = c.GetVersion()
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

// GetCheckpoint implements GetCheckpoint.
func (s *Server) GetCheckpoint(_ context.Context, req *reconv1.GetCheckpointRequest) (*reconv1.Checkpoint, error) {
	var c *reconv1.Checkpoint
	var err error
	if req.GetVersion() == 0 {
		c, err = s.store.Latest()
	} else {
		c, err = s.store.Get(req.GetVersion())
	}
	switch {
	case errors.Is(err, checkpoint.ErrNotFound):
		return nil, status.Error(codes.NotFound, err.Error())
	case errors.Is(err, checkpoint.ErrCorrupt):
		return nil, status.Error(codes.DataLoss, err.Error())
	case err != nil:
		return nil, status.Error(codes.Internal, err.Error())
	}
	return c, nil
}

// ListCheckpoints implements ListCheckpoints.
func (s *Server) ListCheckpoints(_ context.Context, _ *reconv1.ListCheckpointsRequest) (*reconv1.ListCheckpointsResponse, error) {
	list, err := s.store.List()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &reconv1.ListCheckpointsResponse{}
	for _, in := range list {
		ci := &reconv1.CheckpointInfo{Version: in.Version, Round: in.Round, Threshold: in.Threshold, Pinned: in.Pinned,
			Loss: in.Loss, Variant: in.Variant}
		if !in.CreatedAt.IsZero() {
			ci.CreatedAt = timestamppb.New(in.CreatedAt)
		}
		if in.Err != nil {
			ci.Error = in.Err.Error()
		}
		resp.Checkpoints = append(resp.Checkpoints, ci)
	}
	return resp, nil
}

// Rollback implements Rollback: the stored version's parameters, optimizer
// state and training state become the current ones and are published at
// once as a new, higher version; the round counter keeps growing. The
// target is pinned, so retention never prunes it: a later rollback to the
// same known-good model stays possible.
func (s *Server) Rollback(_ context.Context, req *reconv1.RollbackRequest) (*reconv1.RollbackResponse, error) {
	c, err := s.store.Get(req.GetVersion())
	if errors.Is(err, checkpoint.ErrNotFound) {
		return nil, status.Error(codes.NotFound, err.Error())
	}
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	l, err := checkpoint.Load(c)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l.Model.NumParams() != s.model.NumParams() {
		return nil, status.Errorf(codes.FailedPrecondition, "version %d is a different model", req.GetVersion())
	}
	s.model.SetParams(l.Model.Params())
	if err := s.model.SetState(l.Model.State()); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if a, ok := l.Optimizer.(*ae.Adam); ok {
		if err := s.opt.Restore(a.State()); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	if s.norm == nil && l.Normalizer != nil {
		s.norm, s.warm = l.Normalizer, nil
	}
	s.threshold = c.GetThreshold()
	// The loss goes with the parameters: the rollback's checkpoint, and
	// Status until the next round, show the version's own.
	s.lastLoss = c.GetLoss()
	s.metrics.loss.Set(s.lastLoss)
	if err := s.store.Pin(req.GetVersion()); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := s.checkpointLocked(time.Now(), "rolled back"); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	s.log.Info("rolled back", "from", req.GetVersion(), "published", s.version)
	return &reconv1.RollbackResponse{Version: s.version}, nil
}

// Status implements Status: the last completed round and its loss, the
// training state as the recon_coordinator_training_state metric names it,
// the newest version, threshold, records read, presentations per record
// and lineage, and each joined worker (sorted by id) with when its session
// began, how many gradients were accepted in it and when the last came,
// and whether it is benched. It answers from memory, under the lock.
func (s *Server) Status(context.Context, *reconv1.StatusRequest) (*reconv1.StatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &reconv1.StatusResponse{
		Time: timestamppb.Now(), Round: s.lastRound, Loss: s.lastLoss, State: s.pace.State().String(),
		Version: s.version, Threshold: s.threshold, Records: s.records, PresentationsPerRecord: s.perRecord,
		Lineage: s.store.ID(),
	}
	// A session whose lease has run out is no longer joined; the loop ends it.
	ids := make([]string, 0, len(s.sessions))
	for id := range s.sessions {
		if s.machine.Joined(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		ss := s.sessions[id]
		w := &reconv1.WorkerStatus{Id: id, JoinedAt: timestamppb.New(ss.since), Gradients: ss.gradients, Benched: s.machine.Benched(id)}
		if !ss.lastGradient.IsZero() {
			w.LastGradientAt = timestamppb.New(ss.lastGradient)
		}
		resp.Workers = append(resp.Workers, w)
	}
	return resp, nil
}
