// Package redact hides the secrets a URL may carry (user information and
// the query, where tokens travel) before it is logged or put in an error.
package redact

import (
	"net/url"
	"strings"
)

// URL returns u with its user information replaced by "redacted" and its
// query by "[redacted]" (all of it "[redacted]" when it does not parse).
func URL(u string) string {
	p, err := url.Parse(strings.TrimSpace(u))
	if err != nil {
		return "[redacted]"
	}
	if p.User != nil {
		p.User = url.User("redacted")
	}
	if p.RawQuery != "" {
		p.RawQuery = "[redacted]"
	}
	return p.String()
}

// URLs is URL of each comma-separated URL of v.
func URLs(v string) string {
	parts := strings.Split(v, ",")
	for i, p := range parts {
		parts[i] = URL(p)
	}
	return strings.Join(parts, ",")
}
