package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/recon-ad/recon/internal/redact"
)

// Logger returns a text slog logger on stderr at the named level.
func Logger(level string) (*slog.Logger, error) { return newLogger(level, "text", os.Stderr) }

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, Usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, Usagef("--log-format %q: want text or json", format)
}

// LogFlags are a service's logging flags.
type LogFlags struct {
	level, format *string
	out           io.Writer // nil: standard error
}

// AddLogFlags registers --log-level and --log-format.
func AddLogFlags(fs *flag.FlagSet) *LogFlags {
	return &LogFlags{
		level:  fs.String("log-level", "info", "log `level`: debug, info, warn, error"),
		format: fs.String("log-format", "text", "log `format`: text (key=value lines) or json (one object per line, for log pipelines)"),
	}
}

// Logger returns the logger the flags describe and logs the whole
// configuration through it: every flag and its value, with secrets
// (flags named *password* or *secret*, and the credentials and query of
// *-url flags) redacted.
func (f *LogFlags) Logger(fs *flag.FlagSet) (*slog.Logger, error) {
	out := f.out
	if out == nil {
		out = os.Stderr
	}
	log, err := newLogger(*f.level, *f.format, out)
	if err != nil {
		return nil, err
	}
	var attrs []any
	fs.VisitAll(func(fl *flag.Flag) {
		v := fl.Value.String()
		if Secret(fl.Name) && v != "" {
			v = "[redacted]"
		} else if strings.HasSuffix(fl.Name, "-url") {
			v = redact.URLs(v)
		}
		attrs = append(attrs, slog.String(fl.Name, v))
	})
	log.Info("configuration", slog.Group("flags", attrs...))
	return log, nil
}

// Secret reports whether flag name holds a secret that must not be logged.
func Secret(name string) bool {
	return strings.Contains(name, "password") || strings.Contains(name, "secret")
}

// Version is recon's release, set at build time with
// -ldflags "-X github.com/recon-ad/recon/internal/cli.Version=v0.3.0"; when
// unset, the main module's version from the build information ("(devel)"
// for a build in the repository).
var Version = ""

// BuildInfo returns the version, the VCS revision ("unknown" when the
// build recorded none) and the Go version of this binary.
func BuildInfo() (version, revision, goVersion string) {
	version, revision, goVersion = Version, "unknown", runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if version == "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				revision = s.Value
			}
		}
	}
	if version == "" {
		version = "(devel)"
	}
	return version, revision, goVersion
}

// Registry returns a Prometheus registry with the Go and process
// collectors and recon_build_info (1, labelled with version, revision and
// goversion, as Prometheus's own build_info metrics are).
func Registry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	version, revision, goVersion := BuildInfo()
	info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "recon_build_info",
		Help:        "A metric with a constant 1 labelled by the version, revision and Go version recon was built from.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion}})
	info.Set(1)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), info)
	return reg
}

// ServeMetrics serves /metrics from reg, and /livez and /healthz (200
// while the process runs: a liveness probe), on addr until ctx ends; an
// empty addr serves nothing. It returns the bound address (useful with
// port 0) or an error if it cannot listen.
func ServeMetrics(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger) (string, error) {
	return Serve(ctx, addr, reg, log, nil)
}

// Probes registers on mux, under prefix ("" or "/name"), /metrics from
// reg (nil: none), /livez and /healthz (200 while the process runs) and
// /readyz (200 "ok" while ready returns nil, else 503 with its error's
// text; nil ready: always ready).
func Probes(mux *http.ServeMux, prefix string, reg *prometheus.Registry, ready func() error) {
	if reg != nil {
		mux.Handle(prefix+"/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	live := func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }
	mux.HandleFunc(prefix+"/healthz", live)
	mux.HandleFunc(prefix+"/livez", live)
	mux.HandleFunc(prefix+"/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, "not ready: "+err.Error()+"\n")
				return
			}
		}
		_, _ = io.WriteString(w, "ok\n")
	})
}

// Serve is ServeMetrics with a readiness probe: /readyz answers 200 "ok"
// while ready returns nil, and 503 with its error's text otherwise (nil
// ready: always ready).
func Serve(ctx context.Context, addr string, reg *prometheus.Registry, log *slog.Logger, ready func() error) (string, error) {
	if addr == "" {
		return "", nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics listener: %w", err)
	}
	mux := http.NewServeMux()
	Probes(mux, "", reg, ready)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("metrics server shutdown", "err", err)
		}
	}()
	return lis.Addr().String(), nil
}
