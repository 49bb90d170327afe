package coordinator

import (
	"google.golang.org/grpc"

	"github.com/recon-ad/recon/internal/calib"
	"github.com/recon-ad/recon/pkg/ae"
)

// minMessageBytes is gRPC's default receive limit, the least the
// coordinator accepts.
const minMessageBytes = 4 << 20

// MaxMessageBytes is the largest message a worker of model s may send
// the coordinator: a gradient (one value per parameter, with the code
// width as wide as the input, the most an automatic code can be), up to
// calib.MaxHeldOutRows held-out records, or its warm-up moments (p + p^2
// sums, sent up to calib.MaxMomentsWidth), with 1 MiB of framing. Models
// wider than gRPC's 4 MiB default allows (a gradient of about p = 2,000
// with the automatic hidden layer) then still train.
func MaxMessageBytes(s ae.Spec) int {
	p := s.Input
	bound := s
	bound.Code = max(s.Code, p)
	values := max(bound.Normalize().NumParams()+s.Code+calib.MaxHeldOutRows*p, p+p*p) + 64
	return max(8*values+1<<20, minMessageBytes)
}

// ServerOptions are the gRPC server options the coordinator of model s
// needs: a receive limit of MaxMessageBytes(s).
func ServerOptions(s ae.Spec) []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(MaxMessageBytes(s))}
}
