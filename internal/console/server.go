package console

import (
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/recon-ad/recon/internal/cli"
)

//go:embed web
var web embed.FS

// Rollbacker rolls the model back: training continues from version's
// parameters, published as a new version, which it returns.
type Rollbacker interface {
	Rollback(ctx context.Context, version uint64) (uint64, error)
}

// ServerConfig configures the HTTP side.
type ServerConfig struct {
	// Prefix is the path the console is served under ("" or "/recon",
	// no trailing slash), for a reverse proxy that forwards it unchanged.
	Prefix string
	// Rollback, with Token, enables the rollback action; nil (or
	// ReadOnly) leaves it out of the pages and refuses the endpoint.
	Rollback Rollbacker
	Token    string               // the bearer token a rollback request must carry
	ReadOnly bool                 // offer no action at all
	Log      *slog.Logger         // where rollbacks and failures are logged
	Registry *prometheus.Registry // served at /metrics (nil: none)
	Metrics  *Metrics             // the console's metrics (nil: unregistered ones)
	// Ready is /readyz's check (nil: always ready).
	Ready func() error
	// Explainer, when set, recomputes an opened alert over every feature.
	Explainer *Explainer
}

// Metrics are the console's own metrics.
type Metrics struct {
	read        *prometheus.CounterVec
	undecodable *prometheus.CounterVec
	clients     prometheus.Gauge
	rollbacks   *prometheus.CounterVec
}

// NewMetrics registers the console's metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		read: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recon_console_records_read_total",
			Help: "Records the console read from the topics it follows, by topic."}, []string{"topic"}),
		undecodable: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recon_console_records_undecodable_total",
			Help: "Records of the alerts or scores topics the console could not decode, by topic."}, []string{"topic"}),
		clients: prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_console_event_streams",
			Help: "Browsers connected to the live event stream."}),
		rollbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "recon_console_rollbacks_total",
			Help: "Rollback requests, by result: done, unauthorized, disabled, failed."}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.read, m.undecodable, m.clients, m.rollbacks)
	}
	return m
}

// Server serves the console's pages and API from a State.
type Server struct {
	cfg   ServerConfig
	state *State
	page  *template.Template
	mux   *http.ServeMux

	mu      sync.Mutex
	clients map[chan Point]struct{}
}

// NewServer returns the console's HTTP handler over state.
func NewServer(state *State, cfg ServerConfig) (*Server, error) {
	if cfg.Prefix != "" && (!strings.HasPrefix(cfg.Prefix, "/") || strings.HasSuffix(cfg.Prefix, "/")) {
		return nil, fmt.Errorf("console: path prefix %q: want /name, without a trailing slash", cfg.Prefix)
	}
	if cfg.Rollback != nil && !cfg.ReadOnly && cfg.Token == "" {
		return nil, errors.New("console: the rollback action needs a token")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	page, err := template.ParseFS(web, "web/index.html")
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, state: state, page: page, mux: http.NewServeMux(), clients: map[chan Point]struct{}{}}
	static, err := fs.Sub(web, "web")
	if err != nil {
		return nil, err
	}
	p := cfg.Prefix
	s.mux.HandleFunc("GET "+p+"/{$}", s.index)
	if p != "" {
		s.mux.Handle("GET "+p, http.RedirectHandler(p+"/", http.StatusMovedPermanently))
	}
	s.mux.Handle("GET "+p+"/static/", http.StripPrefix(p+"/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET "+p+"/api/overview", func(w http.ResponseWriter, _ *http.Request) {
		o := state.Overview(time.Now())
		o.Rollback = s.rollbackOn()
		writeJSON(w, o)
	})
	s.mux.HandleFunc("GET "+p+"/api/events", s.events)
	s.mux.HandleFunc("GET "+p+"/api/alerts", s.alerts)
	s.mux.HandleFunc("GET "+p+"/api/alert", s.alert)
	s.mux.HandleFunc("GET "+p+"/api/scores", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, state.Scores(60)) })
	s.mux.HandleFunc("GET "+p+"/api/models", func(w http.ResponseWriter, _ *http.Request) {
		m := state.Models()
		writeJSON(w, struct {
			Models
			Rollback bool `json:"rollback"`
		}{m, s.rollbackOn()})
	})
	s.mux.HandleFunc("POST "+p+"/api/rollback", s.rollback)
	cli.Probes(s.mux, p, cfg.Registry, cfg.Ready)
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Pages and data are never cached: they are live, and an operator's
	// browser should not show yesterday's stream.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	s.mux.ServeHTTP(w, r)
}

func (s *Server) rollbackOn() bool { return s.cfg.Rollback != nil && !s.cfg.ReadOnly }

func (s *Server) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	err := s.page.Execute(w, struct {
		Base     string
		Rollback bool
	}{s.cfg.Prefix + "/", s.rollbackOn()})
	if err != nil {
		s.cfg.Log.Warn("console page", "err", err)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v) // the header is out: nothing left to tell the client
}

func jsonError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (s *Server) alerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := AlertFilter{Key: q.Get("key"), Feature: q.Get("feature")}
	if v := q.Get("version"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			jsonError(w, http.StatusBadRequest, fmt.Sprintf("version %q: want a number", v))
			return
		}
		f.Version = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			jsonError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want a positive number", v))
			return
		}
		f.Limit = min(n, 2000)
	}
	writeJSON(w, s.state.Alerts(f))
}

func (s *Server) alert(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("id")
	d, ok := s.state.Alert(id)
	if !ok {
		jsonError(w, http.StatusNotFound, fmt.Sprintf("alert %q is not among the %d the console keeps", id, s.state.lim.Alerts))
		return
	}
	if s.cfg.Explainer != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		e, err := s.cfg.Explainer.Explain(ctx, d.Alert.Alert)
		if err != nil {
			e = &Explained{Error: err.Error()}
		}
		d.Explained = e
	}
	writeJSON(w, d)
}

// events streams a Tick every second as server-sent events, after an
// Overview first.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	ch := make(chan Point, 1)
	s.mu.Lock()
	s.clients[ch] = struct{}{}
	s.mu.Unlock()
	s.cfg.Metrics.clients.Inc()
	defer func() {
		s.mu.Lock()
		delete(s.clients, ch)
		s.mu.Unlock()
		s.cfg.Metrics.clients.Dec()
	}()
	o := s.state.Overview(time.Now())
	o.Rollback = s.rollbackOn()
	seq := o.LastSeq
	if err := writeEvent(w, "overview", o); err != nil {
		return
	}
	fl.Flush()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
		case p := <-ch:
			t := s.state.TickEvent(p, seq)
			seq = t.LastSeq
			if err := writeEvent(w, "tick", t); err != nil {
				return
			}
		}
		fl.Flush()
	}
}

func writeEvent(w io.Writer, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b)
	return err
}

// Broadcast hands p, the newest point, to every connected event stream; a
// stream still writing the last one skips this one.
func (s *Server) Broadcast(p Point) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.clients {
		select {
		case ch <- p:
		default:
		}
	}
}

// rollback is POST api/rollback {"version": N} with "Authorization: Bearer
// TOKEN".
func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	m := s.cfg.Metrics.rollbacks
	if !s.rollbackOn() {
		m.WithLabelValues("disabled").Inc()
		jsonError(w, http.StatusForbidden, "rollback is disabled: this console is read-only")
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(s.cfg.Token)) != 1 {
		m.WithLabelValues("unauthorized").Inc()
		s.cfg.Log.Warn("rollback refused: no valid token", "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="recon console"`)
		jsonError(w, http.StatusUnauthorized, "rollback needs the console's token (Authorization: Bearer TOKEN)")
		return
	}
	var req struct {
		Version uint64 `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<10)).Decode(&req); err != nil || req.Version == 0 {
		jsonError(w, http.StatusBadRequest, `want {"version": N} with N a stored version`)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	v, err := s.cfg.Rollback.Rollback(ctx, req.Version)
	if err != nil {
		m.WithLabelValues("failed").Inc()
		code := http.StatusBadGateway
		switch status.Code(err) {
		case codes.NotFound:
			code = http.StatusNotFound
		case codes.FailedPrecondition, codes.InvalidArgument:
			code = http.StatusConflict
		}
		s.cfg.Log.Warn("rollback failed", "version", req.Version, "err", err, "remote", r.RemoteAddr)
		jsonError(w, code, fmt.Sprintf("rollback to version %d: %v", req.Version, status.Convert(err).Message()))
		return
	}
	m.WithLabelValues("done").Inc()
	s.cfg.Log.Info("rolled back", "from", req.Version, "published", v, "remote", r.RemoteAddr)
	writeJSON(w, map[string]uint64{"from": req.Version, "published": v})
}
