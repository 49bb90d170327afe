package cli

import (
	"flag"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/recon-ad/recon/internal/tlsconf"
	"github.com/recon-ad/recon/pkg/stream"
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

// Kafka are the flags of a Kafka client's security.
type Kafka struct {
	tls                  *bool
	ca, cert, key        *string
	mech, user, password *string
}

// AddKafkaFlags registers the Kafka TLS and SASL flags.
func AddKafkaFlags(fs *flag.FlagSet) *Kafka {
	return &Kafka{
		tls:      fs.Bool("kafka-tls", false, "connect to Kafka over TLS, verifying the brokers against the system roots (or --kafka-tls-ca)"),
		ca:       fs.String("kafka-tls-ca", "", "Kafka over TLS, verifying the brokers against this PEM CA `file`"),
		cert:     fs.String("kafka-tls-cert", "", "Kafka over mutual TLS: this PEM client certificate `file` (with --kafka-tls-key)"),
		key:      fs.String("kafka-tls-key", "", "the Kafka client certificate's PEM private key `file`"),
		mech:     fs.String("kafka-sasl-mechanism", "none", "Kafka SASL `mechanism`: none, plain, scram-sha-256 or scram-sha-512"),
		user:     fs.String("kafka-sasl-username", "", "Kafka SASL `username`"),
		password: fs.String("kafka-sasl-password", "", "Kafka SASL `password` (prefer RECON_KAFKA_SASL_PASSWORD: it stays out of the process list; never logged)"),
	}
}

// Security returns the connection security the flags describe.
func (k *Kafka) Security() (stream.Security, error) {
	var sec stream.Security
	f := tlsconf.Files{Cert: *k.cert, Key: *k.key, CA: *k.ca}
	if *k.tls || f.Enabled() {
		cfg, err := tlsconf.Client(f, "")
		if err != nil {
			return sec, Usagef("kafka: %v", err)
		}
		sec.TLS = cfg
	}
	m, err := stream.NewSASL(*k.mech, *k.user, *k.password)
	if err != nil {
		return sec, Usagef("--kafka-sasl-mechanism: %v", err)
	}
	if m != nil && *k.user == "" {
		return sec, Usagef("--kafka-sasl-mechanism %s needs --kafka-sasl-username and a password", *k.mech)
	}
	sec.SASL = m
	return sec, nil
}

// Client are the flags of a process that talks to Kafka and to the
// coordinator (trainer run, scorer run): logging, gRPC TLS to the
// coordinator, Kafka TLS and SASL.
type Client struct {
	log   *LogFlags
	tls   *ClientTLS
	kafka *Kafka
}

// AddClientFlags registers the Client flags.
func AddClientFlags(fs *flag.FlagSet) *Client {
	return &Client{log: AddLogFlags(fs), tls: AddClientTLSFlags(fs), kafka: AddKafkaFlags(fs)}
}

// Setup returns, after fs is parsed, the logger (which has logged the
// configuration), the coordinator's transport credentials and the Kafka
// connection security.
func (c *Client) Setup(fs *flag.FlagSet) (*slog.Logger, grpc.DialOption, stream.Security, error) {
	sec, err := c.kafka.Security()
	if err != nil {
		return nil, nil, sec, err
	}
	creds, err := c.tls.DialOption()
	if err != nil {
		return nil, nil, sec, err
	}
	log, err := c.log.Logger(fs)
	return log, creds, sec, err
}

// MaxCoordinatorMessage is the receive limit of the coordinator's clients
// (trainers, scorers, the console, the operator commands): a checkpoint or
// a round start carries the parameters, the optimizer state and the p x p
// whitening, tens of MiB for models a few thousand features wide, where
// gRPC's default allows 4 MiB.
const MaxCoordinatorMessage = 1 << 30

// DefaultCoordinator is the coordinator's gRPC address when no flag names
// one: where `coordinator run` listens, and what the trainers, scorers,
// the console and `coordinator` admin commands dial.
const DefaultCoordinator = "127.0.0.1:7070"

// CoordinatorDialOptions are the dial options of a coordinator client,
// creds (DialOption) first: transport credentials and the receive limit.
func CoordinatorDialOptions(creds grpc.DialOption) []grpc.DialOption {
	return []grpc.DialOption{creds, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxCoordinatorMessage))}
}
