package stream

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Security is how clients connect to the brokers: TLS, SASL, both or
// neither (the zero value: plaintext).
type Security struct {
	TLS  *tls.Config    // nil: plaintext
	SASL sasl.Mechanism // nil: no authentication
}

// SASL mechanism names, as --kafka-sasl-mechanism takes them.
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// NewSASL returns the named mechanism with its credentials ("" or "none":
// nil).
func NewSASL(mechanism, username, password string) (sasl.Mechanism, error) {
	switch strings.ToLower(mechanism) {
	case "", "none":
		return nil, nil
	case SASLPlain:
		return plain.Mechanism{Username: username, Password: password}, nil
	case SASLScramSHA256:
		return scram.Mechanism(scram.SHA256, username, password)
	case SASLScramSHA512:
		return scram.Mechanism(scram.SHA512, username, password)
	}
	return nil, fmt.Errorf("stream: SASL mechanism %q: want none, %s, %s or %s", mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
}

func (s Security) dialer() *kafka.Dialer {
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: s.TLS, SASLMechanism: s.SASL}
}

func (s Security) transport() *kafka.Transport {
	return &kafka.Transport{DialTimeout: 10 * time.Second, TLS: s.TLS, SASL: s.SASL}
}

// authFailure reports whether msg is the brokers refusing the credentials.
func authFailure(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "sasl authentication failed") || strings.Contains(m, "authentication failed") ||
		strings.Contains(m, "illegal sasl state") || strings.Contains(m, "unsupported sasl mechanism")
}
