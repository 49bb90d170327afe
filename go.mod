module github.com/recon-ad/recon

go 1.26

require (
	go.etcd.io/bbolt v1.5.0
	gonum.org/v1/gonum v0.17.0
	google.golang.org/protobuf v1.36.12
)

require golang.org/x/sys v0.45.0 // indirect
