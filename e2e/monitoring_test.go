//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/recon-ad/recon/internal/procs"
	"github.com/recon-ad/recon/internal/testkit"
)

// TestPrometheusAndAlertmanager runs a real Prometheus (scraping the
// pipeline every second, with deploy/monitoring's rules) and a real
// Alertmanager, the scorers sending their alerts to it (--alertmanager-url):
// an injected anomaly's alert appears in Alertmanager's API with its key,
// top feature and model version; every query of the shipped dashboard
// returns data; when the scorers' webhook fails, so that they hold their
// commits and score nothing while records wait, ReconScorerStalled
// reaches Alertmanager; and when the scorers freeze (SIGSTOP: alive, scoring nothing, answering no
// scrape) ReconScorersAbsent reaches Alertmanager. The rules are the
// shipped ones with their windows and "for" durations cut to seconds,
// since Prometheus keeps wall-clock time; their expressions are unchanged
// (promtool test rules checks them at their real durations).
// RECON_PROMETHEUS and RECON_ALERTMANAGER name the binaries, which make
// e2e builds at pinned versions from the Go module proxy.
func TestPrometheusAndAlertmanager(t *testing.T) {
	promBin, amBin := os.Getenv("RECON_PROMETHEUS"), os.Getenv("RECON_ALERTMANAGER")
	if promBin == "" || amBin == "" {
		t.Skip("RECON_PROMETHEUS and RECON_ALERTMANAGER are not set: make e2e builds both and sets them")
	}
	dir := t.TempDir()
	amAddr, promAddr := addr(t), addr(t)

	rules, err := os.ReadFile("../deploy/monitoring/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	short := regexp.MustCompile(`for: \d+m`).ReplaceAllString(string(rules), "for: 3s")
	short = regexp.MustCompile(`\[\d+m\]`).ReplaceAllString(short, "[20s]")
	write(t, filepath.Join(dir, "rules.yml"), short)

	write(t, filepath.Join(dir, "alertmanager.yml"), `route:
  receiver: none
  group_by: [alertname, key]
  group_wait: 1s
receivers:
  - name: none
`)
	am := procs.New(filepath.Dir(amBin), dir, "alertmanager", filepath.Base(amBin), "--config.file", filepath.Join(dir, "alertmanager.yml"),
		"--storage.path", filepath.Join(dir, "am"), "--web.listen-address", amAddr, "--cluster.listen-address", "")
	if err := am.Start(); err != nil {
		t.Fatal(err)
	}
	defer am.Kill()
	// The scorers send their alerts to this Alertmanager too, and to a
	// webhook that can be made to fail: a scorer whose sink fails holds its
	// commit and scores nothing more, alive and answering scrapes, while
	// records wait (a stalled scorer).
	var webhookDown atomic.Bool
	webhook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if webhookDown.Load() {
			http.Error(w, "down for the test", http.StatusServiceUnavailable)
		}
	}))
	defer webhook.Close()
	p := startPipelineWith(t, 500, 0, "--alertmanager-url", "http://"+amAddr, "--webhook-url", webhook.URL)
	var targets strings.Builder
	for job, addrs := range map[string][]string{"recon-coordinator": {p.coordMetrics}, "recon-trainer": p.trainerMetrics, "recon-scorer": p.scorerMetrics} {
		q, _ := json.Marshal(addrs)
		fmt.Fprintf(&targets, "  - job_name: %s\n    static_configs:\n      - targets: %s\n", job, q)
	}
	write(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files:
  - rules.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
%s`, amAddr, targets.String()))
	prom := procs.New(filepath.Dir(promBin), dir, "prometheus", filepath.Base(promBin), "--config.file", filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path", filepath.Join(dir, "tsdb"), "--web.listen-address", promAddr)
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	defer prom.Kill()
	defer func() {
		if t.Failed() {
			t.Logf("---- prometheus log:\n%s\n---- alertmanager log:\n%s", tail(prom.LogText(), 4000), tail(am.LogText(), 4000))
		}
	}()

	// A threshold, so that alerts flow and every panel has something to show.
	waitFor(t, 120*time.Second, "the first threshold", func() bool { return scrape(p.coordMetrics, "recon_coordinator_settled") == 1 })
	waitFor(t, 60*time.Second, "an alert", func() bool {
		return scrape(p.scorerMetrics[0], "recon_scorer_alerts_total")+scrape(p.scorerMetrics[1], "recon_scorer_alerts_total") > 0
	})
	// An injected anomaly's alert reaches Alertmanager through the scorers' sink.
	waitFor(t, 60*time.Second, "a ReconAnomaly alert in Alertmanager, with its key, top feature and model version", func() bool {
		for _, a := range active(amAddr, "ReconAnomaly") {
			if a["key"] != "" && a["top_feature"] != "" && a["model_version"] != "" {
				return true
			}
		}
		return false
	})

	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	b, err := os.ReadFile("../deploy/monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	grafana := strings.NewReplacer("$__rate_interval", "20s", "$job", ".*")
	n := 0
	for _, panel := range dash.Panels {
		for _, tg := range panel.Targets {
			expr := grafana.Replace(tg.Expr)
			var last string
			if !testkit.Within(60*time.Second, func() bool {
				var res int
				res, last = query(promAddr, expr)
				return res > 0
			}) {
				t.Errorf("panel %q: %s returned no data within 60 s (last answer %s)", panel.Title, expr, last)
			}
			n++
		}
	}
	t.Logf("%d dashboard queries returned data", n)
	if firing(amAddr, "ReconScorersAbsent") {
		t.Fatal("ReconScorersAbsent is in Alertmanager while both scorers run")
	}

	if firing(amAddr, "ReconScorerStalled") {
		t.Fatal("ReconScorerStalled is in Alertmanager while the scorers score")
	}
	// Stall the scorers: their webhook answers 503, so every batch with an
	// alert waits for it, uncommitted, while loadgen goes on.
	webhookDown.Store(true)
	stalled := time.Now()
	waitFor(t, 120*time.Second, "ReconScorerStalled in Alertmanager", func() bool { return firing(amAddr, "ReconScorerStalled") })
	t.Logf("ReconScorerStalled reached Alertmanager %v after the webhook went down", time.Since(stalled).Round(100*time.Millisecond))
	webhookDown.Store(false)

	// Freeze the scorers.
	for _, s := range p.scorers {
		if err := s.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	stopped := time.Now()
	waitFor(t, 90*time.Second, "ReconScorersAbsent in Alertmanager", func() bool { return firing(amAddr, "ReconScorersAbsent") })
	t.Logf("ReconScorersAbsent reached Alertmanager %v after the scorers froze", time.Since(stopped).Round(100*time.Millisecond))
	for _, s := range p.scorers {
		if err := s.Signal(syscall.SIGCONT); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
}

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// query runs an instant query and returns the number of series in its
// result and the answer's text.
func query(promAddr, expr string) (int, string) {
	resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Status != "success" {
		return 0, string(b)
	}
	return len(r.Data.Result), string(b)
}

// active returns the labels of Alertmanager's active alerts of that name.
func active(amAddr, name string) []map[string]string {
	resp, err := http.Get("http://" + amAddr + "/api/v2/alerts?active=true&filter=" + url.QueryEscape(`alertname="`+name+`"`))
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var alerts []struct {
		Labels map[string]string `json:"labels"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
		return nil
	}
	var out []map[string]string
	for _, a := range alerts {
		if a.Labels["alertname"] == name {
			out = append(out, a.Labels)
		}
	}
	return out
}

// firing reports whether Alertmanager holds an active alert of that name.
func firing(amAddr, name string) bool { return len(active(amAddr, name)) > 0 }
