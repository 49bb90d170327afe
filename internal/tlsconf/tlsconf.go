// Package tlsconf builds TLS configurations for recon's gRPC servers and
// clients and its Kafka clients from PEM files, and picks up rotated files
// without a restart: every handshake uses the newest certificate, key and
// CA bundle, re-read when a file's modification time or size changes
// (checked at most once per ReloadInterval).
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// ReloadInterval is how often, at most, the files are checked for changes.
var ReloadInterval = time.Second

// Files names the PEM files of one side of a connection.
type Files struct {
	Cert string // certificate chain presented to the peer
	Key  string // its private key
	CA   string // CA bundle the peer's certificate must chain to (server: enables mutual TLS)
}

// Enabled reports whether any file is set.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

func (f Files) check() error {
	if (f.Cert == "") != (f.Key == "") {
		return errors.New("tls: a certificate needs its key and a key its certificate")
	}
	return nil
}

// material is what the files hold at one moment.
type material struct {
	cert *tls.Certificate // nil without Cert
	pool *x509.CertPool   // nil without CA
}

// reloader caches the files' contents and re-reads them when they change.
type reloader struct {
	f       Files
	mu      sync.Mutex
	cur     material
	stamp   string // modification times and sizes at the last load
	checked time.Time
}

func newReloader(f Files) (*reloader, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	r := &reloader{f: f}
	m, stamp, err := load(f)
	if err != nil {
		return nil, err
	}
	r.cur, r.stamp, r.checked = m, stamp, time.Now()
	return r, nil
}

// stampOf describes the files' current state.
func stampOf(f Files) string {
	s := ""
	for _, p := range []string{f.Cert, f.Key, f.CA} {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err == nil {
			s += fmt.Sprintf("%s:%d:%d;", p, st.ModTime().UnixNano(), st.Size())
		} else {
			s += p + ":missing;"
		}
	}
	return s
}

func load(f Files) (material, string, error) {
	stamp := stampOf(f)
	var m material
	if f.Cert != "" {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return m, "", fmt.Errorf("tls: certificate %s and key %s: %w", f.Cert, f.Key, err)
		}
		m.cert = &c
	}
	if f.CA != "" {
		b, err := os.ReadFile(f.CA)
		if err != nil {
			return m, "", fmt.Errorf("tls: CA bundle: %w", err)
		}
		m.pool = x509.NewCertPool()
		if !m.pool.AppendCertsFromPEM(b) {
			return m, "", fmt.Errorf("tls: CA bundle %s holds no PEM certificate", f.CA)
		}
	}
	return m, stamp, nil
}

// current returns the newest material. A rotation caught half-written
// (a certificate that does not match its key yet) keeps the previous
// material until the files agree again.
func (r *reloader) current() material {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < ReloadInterval {
		return r.cur
	}
	r.checked = time.Now()
	if stampOf(r.f) == r.stamp {
		return r.cur
	}
	if m, stamp, err := load(r.f); err == nil {
		r.cur, r.stamp = m, stamp
	}
	return r.cur
}

// Server returns the configuration of a TLS server presenting f.Cert. With
// f.CA set the server requires a client certificate that chains to it
// (mutual TLS): a client without one fails the handshake, before any
// request reaches the server.
func Server(f Files) (*tls.Config, error) {
	if f.Cert == "" {
		return nil, errors.New("tls: a server needs a certificate and key")
	}
	r, err := newReloader(f)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := r.current()
			c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*m.cert}}
			if m.pool != nil {
				c.ClientCAs, c.ClientAuth = m.pool, tls.RequireAndVerifyClientCert
			}
			return c, nil
		},
	}, nil
}

// Client returns the configuration of a TLS client: it verifies the
// server against f.CA (the system roots without one) and, with f.Cert,
// presents a client certificate. serverName overrides the name verified
// (default: the host dialled).
func Client(f Files, serverName string) (*tls.Config, error) {
	r, err := newReloader(f)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		// Verification is done below against the CA bundle as it is at
		// each handshake, so that a rotated CA is picked up too.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: the server presented no certificate")
			}
			opts := x509.VerifyOptions{Roots: r.current().pool, DNSName: cs.ServerName, Intermediates: x509.NewCertPool()}
			for _, c := range cs.PeerCertificates[1:] {
				opts.Intermediates.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(opts)
			return err
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if m := r.current(); m.cert != nil {
				return m.cert, nil
			}
			return &tls.Certificate{}, nil // none: the server decides
		},
	}, nil
}
