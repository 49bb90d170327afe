package cli

import (
	"flag"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recon-ad/recon/internal/tlsconf"
)

// ServerTLS are a gRPC server's TLS flags.
type ServerTLS struct{ cert, key, clientCA *string }

// AddServerTLSFlags registers --tls-cert, --tls-key and --tls-client-ca.
func AddServerTLSFlags(fs *flag.FlagSet) *ServerTLS {
	return &ServerTLS{
		cert:     fs.String("tls-cert", "", "serve gRPC over TLS with this PEM certificate `file` (with --tls-key; re-read when it changes)"),
		key:      fs.String("tls-key", "", "the TLS certificate's PEM private key `file`"),
		clientCA: fs.String("tls-client-ca", "", "mutual TLS: accept only clients whose certificate chains to this PEM CA `file` (re-read when it changes)"),
	}
}

// Options returns the server options: TLS when --tls-cert is set.
func (t *ServerTLS) Options() ([]grpc.ServerOption, error) {
	f := tlsconf.Files{Cert: *t.cert, Key: *t.key, CA: *t.clientCA}
	if !f.Enabled() {
		return nil, nil
	}
	cfg, err := tlsconf.Server(f)
	if err != nil {
		return nil, Usagef("%v", err)
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(cfg))}, nil
}

// ClientTLS are a gRPC client's TLS flags.
type ClientTLS struct{ ca, cert, key, serverName *string }

// AddClientTLSFlags registers --tls-ca, --tls-cert, --tls-key and
// --tls-server-name for the connection to the coordinator.
func AddClientTLSFlags(fs *flag.FlagSet) *ClientTLS {
	return &ClientTLS{
		ca:         fs.String("tls-ca", "", "connect to the coordinator over TLS, verifying it against this PEM CA `file` (re-read when it changes)"),
		cert:       fs.String("tls-cert", "", "mutual TLS: present this PEM client certificate `file` to the coordinator (with --tls-key; re-read when it changes)"),
		key:        fs.String("tls-key", "", "the client certificate's PEM private key `file`"),
		serverName: fs.String("tls-server-name", "", "`name` to verify in the coordinator's certificate (default: the host of --coordinator)"),
	}
}

// DialOption returns the client's transport credentials: TLS when any
// TLS flag is set, plaintext otherwise.
func (t *ClientTLS) DialOption() (grpc.DialOption, error) {
	f := tlsconf.Files{Cert: *t.cert, Key: *t.key, CA: *t.ca}
	if !f.Enabled() {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	cfg, err := tlsconf.Client(f, *t.serverName)
	if err != nil {
		return nil, Usagef("%v", err)
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg)), nil
}
