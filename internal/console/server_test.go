package console

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const token = "a-token-of-enough-length"

// fakeRollback records the versions it was asked to roll back to.
type fakeRollback struct {
	mu    sync.Mutex
	calls []uint64
}

func (f *fakeRollback) Rollback(_ context.Context, v uint64) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v == 404 {
		return 0, status.Error(codes.NotFound, "checkpoint 404: checkpoint not found")
	}
	f.calls = append(f.calls, v)
	return 100 + uint64(len(f.calls)), nil
}

func (f *fakeRollback) n() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func newTestServer(t *testing.T, cfg ServerConfig) (*httptest.Server, *State) {
	t.Helper()
	st := NewState(Limits{})
	srv, err := NewServer(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs, st
}

func post(t *testing.T, url, auth, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRollbackNeedsTheToken: without the token, or with a wrong one, a
// rollback is refused with 401 and the coordinator is never asked; with it
// the coordinator's answer comes back.
func TestRollbackNeedsTheToken(t *testing.T) {
	fake := &fakeRollback{}
	hs, _ := newTestServer(t, ServerConfig{Rollback: fake, Token: token})
	url := hs.URL + "/api/rollback"
	for _, auth := range []string{"", "Bearer ", "Bearer wrong", "Basic " + token, token, "Bearer " + token + "x"} {
		if code, body := post(t, url, auth, `{"version": 3}`); code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d %s, want 401", auth, code, body)
		}
	}
	if fake.n() != 0 {
		t.Fatalf("the coordinator was asked %d times without the token", fake.n())
	}
	if code, body := post(t, url, "Bearer "+token, `{"version": 3}`); code != http.StatusOK || !strings.Contains(body, `"published":101`) {
		t.Errorf("with the token: %d %s", code, body)
	}
	if code, body := post(t, url, "Bearer "+token, `{"version": 404}`); code != http.StatusNotFound || !strings.Contains(body, "not found") {
		t.Errorf("a version the coordinator does not have: %d %s", code, body)
	}
	if code, _ := post(t, url, "Bearer "+token, `{}`); code != http.StatusBadRequest {
		t.Errorf("no version: %d", code)
	}
	if code, _ := get(t, url); code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", code)
	}
	if fake.n() != 1 {
		t.Errorf("the coordinator was asked %d times, want once", fake.n())
	}
	if _, page := get(t, hs.URL+"/"); !strings.Contains(page, `data-rollback="true"`) {
		t.Error("the page does not offer the rollback")
	}
	if strings.Contains(must(get(t, hs.URL+"/")), token) || strings.Contains(must(get(t, hs.URL+"/api/models")), token) {
		t.Error("a page shows the token")
	}
}

func must(_ int, body string) string { return body }

// TestReadOnly: read-only, or with no Rollbacker, the action is absent
// from the pages and the endpoint refuses (403), token or not.
func TestReadOnly(t *testing.T) {
	for name, cfg := range map[string]ServerConfig{
		"read-only":   {Rollback: &fakeRollback{}, Token: token, ReadOnly: true},
		"no rollback": {},
	} {
		hs, _ := newTestServer(t, cfg)
		if code, _ := post(t, hs.URL+"/api/rollback", "Bearer "+token, `{"version": 3}`); code != http.StatusForbidden {
			t.Errorf("%s: rollback %d, want 403", name, code)
		}
		if _, page := get(t, hs.URL+"/"); !strings.Contains(page, `data-rollback="false"`) {
			t.Errorf("%s: the page offers the rollback", name)
		}
		var m struct{ Rollback bool }
		if err := json.Unmarshal([]byte(must(get(t, hs.URL+"/api/models"))), &m); err != nil || m.Rollback {
			t.Errorf("%s: api/models says rollback %v (%v)", name, m.Rollback, err)
		}
		if f, ok := cfg.Rollback.(*fakeRollback); ok && f.n() != 0 {
			t.Errorf("%s: the coordinator was asked", name)
		}
	}
	if _, err := NewServer(NewState(Limits{}), ServerConfig{Rollback: &fakeRollback{}}); err == nil {
		t.Error("a rollback without a token was accepted")
	}
}

// TestPrefix: under a path prefix every page, asset and API answers there
// and the page's base points there.
func TestPrefix(t *testing.T) {
	hs, st := newTestServer(t, ServerConfig{Prefix: "/recon"})
	st.AddAlert("sensor-1", alert(7, 2, "f1"), t0)
	for path, want := range map[string]string{
		"/recon/":                              "<base href=\"/recon/\">",
		"/recon/static/app.js":                 "EventSource",
		"/recon/static/app.css":                "font",
		"/recon/api/alerts?key=sensor-1":       `"key":"sensor-1"`,
		"/recon/api/alert?id=recon-events/3/7": `"neighbours":[]`,
		"/recon/api/scores":                    `"bins":[]`,
		"/recon/api/overview":                  `"series":[]`,
		"/recon/readyz":                        "ok",
	} {
		code, body := get(t, hs.URL+path)
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %.200s; want 200 with %s", path, code, body, want)
		}
	}
	for path, want := range map[string]int{"/": 404, "/api/overview": 404, "/recon/api/alert?id=nope": 404, "/recon/api/alerts?version=x": 400} {
		if code, _ := get(t, hs.URL+path); code != want {
			t.Errorf("GET %s: %d, want %d", path, code, want)
		}
	}
	if _, err := NewServer(NewState(Limits{}), ServerConfig{Prefix: "recon/"}); err == nil {
		t.Error("a prefix without a leading slash was accepted")
	}
}

// TestEvents: the event stream sends the overview, then a tick for each
// broadcast point with the alerts read since.
func TestEvents(t *testing.T) {
	st := NewState(Limits{})
	srv, err := NewServer(st, ServerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	st.AddAlert("a", alert(1, 1, "f1"), t0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := make(chan [2]string, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		var name string
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				name = v
			} else if v, ok := strings.CutPrefix(line, "data: "); ok {
				events <- [2]string{name, v}
			}
		}
		close(events)
	}()
	next := func() [2]string {
		select {
		case e := <-events:
			return e
		case <-time.After(5 * time.Second):
			t.Fatal("no event in 5 s")
		}
		return [2]string{}
	}
	var o Overview
	if e := next(); e[0] != "overview" || json.Unmarshal([]byte(e[1]), &o) != nil || len(o.Alerts) != 1 || o.LastSeq != 1 {
		t.Fatalf("first event %s: %.300s", e[0], e[1])
	}
	st.AddAlert("b", alert(2, 1, "f2"), t0)
	// The stream registers before it writes the overview: this reaches it.
	srv.Broadcast(st.Tick(t0.Add(time.Second)))
	var tk Tick
	if e := next(); e[0] != "tick" || json.Unmarshal([]byte(e[1]), &tk) != nil || len(tk.Alerts) != 1 || tk.Alerts[0].Key != "b" || tk.Point.Alerts != 2 {
		t.Fatalf("tick event %s: %.300s", e[0], e[1])
	}
}
