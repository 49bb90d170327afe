// Package reconv1 holds recon's protobuf messages (checkpoint.proto) and
// the Go code protoc-gen-go generates from them. Regenerate with make proto;
// make verify fails when the committed code differs from a regeneration.
package reconv1
