package redact

import "testing"

func TestURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"http://am:9093", "http://am:9093"},
		{"https://bot:tok3n@hooks.example/a?token=s3cret", "https://redacted@hooks.example/a?[redacted]"},
		{"http://am:9093/api/v2/alerts", "http://am:9093/api/v2/alerts"},
		{"http://[::1", "[redacted]"},
	} {
		if got := URL(c.in); got != c.want {
			t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := URLs("http://a?k=1, http://b"); got != "http://a?[redacted],http://b" {
		t.Errorf("URLs = %q", got)
	}
}
