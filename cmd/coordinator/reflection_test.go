package main

import (
	"context"
	"slices"
	"testing"
	"time"

	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
)

// TestReflection: the coordinator's gRPC server answers server reflection
// (what grpcurl uses without proto files), listing the recon Coordinator
// and the health service, and describes the Coordinator's methods.
func TestReflection(t *testing.T) {
	addr := serveCoordinator(t, "--features", "4", "--metrics-listen", "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := reflectionpb.NewServerReflectionClient(dial(t, addr)).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(req *reflectionpb.ServerReflectionRequest) *reflectionpb.ServerReflectionResponse {
		t.Helper()
		if err := info.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := info.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if e := resp.GetErrorResponse(); e != nil {
			t.Fatalf("reflection: %s", e.GetErrorMessage())
		}
		return resp
	}
	var services []string
	for _, s := range ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}).
		GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	for _, want := range []string{"recon.v1.Coordinator", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(services, want) {
			t.Errorf("reflection lists %v, without %s", services, want)
		}
	}

	resp := ask(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_FileContainingSymbol{
		FileContainingSymbol: "recon.v1.Coordinator"}})
	var methods []string
	for _, b := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		var fd descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(b, &fd); err != nil {
			t.Fatal(err)
		}
		for _, s := range fd.GetService() {
			if fd.GetPackage()+"."+s.GetName() == "recon.v1.Coordinator" {
				for _, m := range s.GetMethod() {
					methods = append(methods, m.GetName())
				}
			}
		}
	}
	for _, want := range []string{"Train", "WatchCheckpoints", "GetCheckpoint", "ListCheckpoints", "Rollback"} {
		if !slices.Contains(methods, want) {
			t.Errorf("the reflected recon.v1.Coordinator has methods %v, without %s", methods, want)
		}
	}
}
