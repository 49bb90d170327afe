package stream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: s.TLS, SASLMechanism: s.SASL, ClientID: clientID}
}

// clientID names this process to the brokers (and in a group's member
// list): program@host/pid, so that an operator can tell which replica
// holds a partition. A pod's host name is the pod's name.
var clientID = func() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s@%s/%d", filepath.Base(os.Args[0]), host, os.Getpid())
}()

func (s Security) transport() *kafka.Transport {
	return &kafka.Transport{DialTimeout: 10 * time.Second, TLS: s.TLS, SASL: s.SASL, ClientID: clientID}
}

// authFailure reports whether msg is the brokers refusing the credentials.
func authFailure(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "authentication failed") ||
		strings.Contains(m, "illegal sasl state") || strings.Contains(m, "unsupported sasl mechanism")
}

// PartitionProgress is a consumer group's place in one partition.
type PartitionProgress struct {
	Committed int64 // the group's committed offset (-1: none)
	Start     int64 // the partition's first retained offset
	End       int64 // the partition's end offset (the next record's)
}

// Lag returns the records between the committed offset and the end (all
// retained ones when nothing is committed).
func (p PartitionProgress) Lag() int64 {
	if p.Committed < 0 {
		return max(p.End-p.Start, 0)
	}
	return max(p.End-p.Committed, 0)
}

// Admin asks the brokers about topics and groups over one pool of
// connections; Close releases it.
type Admin struct {
	cl *kafka.Client
	tr *kafka.Transport
}

// Admin returns an Admin for brokers, connecting as s says.
func (s Security) Admin(brokers []string) *Admin {
	tr := s.transport()
	return &Admin{cl: &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second}, tr: tr}
}

// Close closes the Admin's connections.
func (a *Admin) Close() { a.tr.CloseIdleConnections() }

// MissingTopics returns those of topics the brokers do not have. It never
// creates one (its metadata request does not allow auto-creation).
func (a *Admin) MissingTopics(ctx context.Context, topics ...string) ([]string, error) {
	md, err := a.cl.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, t := range md.Topics {
		if t.Error == nil && len(t.Partitions) > 0 {
			have[t.Name] = true
		} else if t.Error != nil && !errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("topic %s: %w", t.Name, t.Error)
		}
	}
	var missing []string
	for _, t := range topics {
		if !have[t] {
			missing = append(missing, t)
		}
	}
	return missing, nil
}

// GroupProgress returns, for every partition of topic, where group stands:
// what a member sees of the whole group, its own partitions or not.
func (a *Admin) GroupProgress(ctx context.Context, group, topic string) (map[int]PartitionProgress, error) {
	cl := a.cl
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	var parts []int
	for _, t := range md.Topics {
		if t.Name == topic {
			if t.Error != nil {
				return nil, t.Error
			}
			for _, p := range t.Partitions {
				parts = append(parts, p.ID)
			}
		}
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("stream: topic %s has no partitions", topic)
	}
	reqs := make([]kafka.OffsetRequest, 0, 2*len(parts))
	for _, p := range parts {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	// The committed offsets first, then the ends: read the other way, a
	// commit landing between could pass an end read before it, and look
	// like a log that went back.
	of, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, err
	}
	lo, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, err
	}
	out := map[int]PartitionProgress{}
	for _, p := range lo.Topics[topic] {
		if p.Error != nil {
			return nil, p.Error
		}
		out[p.Partition] = PartitionProgress{Committed: -1, Start: max(p.FirstOffset, 0), End: p.LastOffset}
	}
	if of.Error == nil {
		for _, p := range of.Topics[topic] {
			if pp, ok := out[p.Partition]; ok && p.Error == nil {
				pp.Committed = p.CommittedOffset
				out[p.Partition] = pp
			}
		}
	}
	return out, nil
}

// Holders returns, for each partition of topic assigned in group's current
// generation, the member holding it as "client-id@host (member-id)", and
// the group's state; a partition assigned to nobody is absent.
func (a *Admin) Holders(ctx context.Context, group, topic string) (holders map[int]string, state string, err error) {
	resp, err := a.cl.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return nil, "", err
	}
	holders = map[int]string{}
	for _, g := range resp.Groups {
		if g.Error != nil {
			return nil, "", g.Error
		}
		state = g.GroupState
		for _, m := range g.Members {
			for _, t := range m.MemberAssignments.Topics {
				if t.Topic != topic {
					continue
				}
				for _, p := range t.Partitions {
					holders[p] = fmt.Sprintf("%s@%s (%s)", m.ClientID, m.ClientHost, m.MemberID)
				}
			}
		}
	}
	return holders, state, nil
}
