package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// ruleFile is a Prometheus rules file.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Record      string            `json:"record"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func rules(t *testing.T) ruleFile {
	var f ruleFile
	readYAML(t, "monitoring/rules.yml", &f)
	if len(f.Groups) == 0 {
		t.Fatal("monitoring/rules.yml has no groups")
	}
	return f
}

// The PrometheusRule carries exactly the groups of the plain rules file.
func TestPrometheusRuleMatchesRulesFile(t *testing.T) {
	var pr struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   map[string]any `json:"metadata"`
		Spec       ruleFile       `json:"spec"`
	}
	readYAML(t, "monitoring/prometheusrule.yaml", &pr)
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Fatalf("prometheusrule.yaml is %s %s", pr.APIVersion, pr.Kind)
	}
	a, _ := json.Marshal(rules(t))
	b, _ := json.Marshal(pr.Spec)
	if !bytes.Equal(a, b) {
		t.Errorf("prometheusrule.yaml's groups differ from rules.yml's:\n%s\n%s", a, b)
	}
}

// Every alerting rule has a promtool unit test in which it fires.
func TestEveryRuleHasAUnitTest(t *testing.T) {
	var tests struct {
		RuleFiles          []string `json:"rule_files"`
		EvaluationInterval string   `json:"evaluation_interval"`
		Tests              []struct {
			Name        string           `json:"name"`
			Interval    string           `json:"interval"`
			InputSeries []map[string]any `json:"input_series"`
			AlertTests  []struct {
				EvalTime  string           `json:"eval_time"`
				AlertName string           `json:"alertname"`
				ExpAlerts []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	readYAML(t, "monitoring/rules_test.yml", &tests)
	fires := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, at := range tc.AlertTests {
			if len(at.ExpAlerts) > 0 {
				fires[at.AlertName] = true
			}
		}
	}
	for _, g := range rules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !fires[r.Alert] {
				t.Errorf("alert %s has no unit test in rules_test.yml in which it fires", r.Alert)
			}
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s wants a severity label and summary and description annotations", r.Alert)
			}
		}
	}
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard.json: %v", err)
	}
	return d
}

// The dashboard picks its Prometheus with a datasource variable, and every
// panel uses it.
func TestDashboardUsesADatasourceVariable(t *testing.T) {
	d := readDashboard(t)
	var hasVar bool
	for _, v := range d.Templating.List {
		hasVar = hasVar || (v.Type == "datasource" && v.Name == "datasource" && v.Query == "prometheus")
	}
	if !hasVar {
		t.Error("dashboard.json has no datasource variable of type prometheus named datasource")
	}
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %q with %d queries; want ${datasource} and at least one", p.Title, p.Datasource.UID, len(p.Targets))
		}
	}
}

// expressions returns every PromQL expression of the rules and the
// dashboard, by where it is.
func expressions(t *testing.T) map[string]string {
	out := map[string]string{}
	for _, g := range rules(t).Groups {
		for _, r := range g.Rules {
			out["rule "+r.Alert+r.Record] = r.Expr
		}
	}
	for _, p := range readDashboard(t).Panels {
		for i, tg := range p.Targets {
			out[fmt.Sprintf("panel %q query %d", p.Title, i)] = tg.Expr
		}
	}
	return out
}

var metricName = regexp.MustCompile(`\b(?:recon|process|go)_[a-zA-Z0-9_]+`)

// Every metric the rules and the dashboard name is one recon's binaries
// export: the test runs devkafka, a coordinator, a trainer and a scorer
// as deployed (one stream, the scorer consuming it) and reads their
// /metrics. A renamed or missing metric would leave a panel empty and a
// rule silent.
func TestMonitoringNamesOnlyExportedMetrics(t *testing.T) {
	exported := scrapeAll(t)
	for where, expr := range expressions(t) {
		for _, m := range metricName.FindAllString(expr, -1) {
			if !exported[m] {
				t.Errorf("%s names %s, which no recon binary exports: %s", where, m, expr)
			}
		}
	}
}

// promtool runs the pinned promtool (RECON_PROMTOOL, which `make
// test-monitoring` builds from the Go module proxy and sets).
func promtool(t *testing.T, args ...string) string {
	t.Helper()
	bin := os.Getenv("RECON_PROMTOOL")
	if bin == "" {
		t.Skip("RECON_PROMTOOL is not set: `make test-monitoring` (part of make e2e) builds the pinned promtool and runs this test")
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = "monitoring"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// promtool check rules and promtool test rules pass on the shipped rules,
// and every dashboard query parses (checked as recording rules).
func TestPromtool(t *testing.T) {
	t.Log(promtool(t, "check", "rules", "rules.yml"))
	t.Log(promtool(t, "test", "rules", "rules_test.yml"))
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	i := 0
	for where, expr := range expressions(t) {
		if !strings.HasPrefix(where, "panel") {
			continue
		}
		// Grafana's variables, as Grafana substitutes them.
		e := strings.NewReplacer("$__rate_interval", "1m", `"$job"`, `".*"`).Replace(expr)
		q, _ := json.Marshal(e)
		fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %s\n", i, q)
		i++
	}
	f := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log(promtool(t, "check", "rules", f))
}

// scrapeAll runs the components and returns every sample name their
// /metrics shows.
func scrapeAll(t *testing.T) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	ports := freeAddrs(t, 5)
	kafka, grpcAddr := ports[0], ports[1]
	metrics := map[string]string{"coordinator": ports[2], "trainer": ports[3], "scorer": ports[4]}
	run := func(name string, args ...string) *bytes.Buffer {
		cmd := exec.CommandContext(t.Context(), filepath.Join(binDir, name), args...)
		cmd.Dir = dir
		cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "RECON_") })
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-done
			if t.Failed() {
				t.Logf("---- %s log:\n%s", name, out.String())
			}
		})
		return &out
	}
	run("devkafka", "--listen", kafka, "--data-dir", filepath.Join(dir, "kafka"))
	run("coordinator", "--listen", grpcAddr, "--metrics-listen", metrics["coordinator"], "--store", "c.db", "--features", "4")
	run("trainer", "run", "--source", "kafka", "--brokers", kafka, "--format", "json-array", "--features", "4",
		"--coordinator", grpcAddr, "--id", "t1", "--metrics-listen", metrics["trainer"])
	run("scorer", "run", "--brokers", kafka, "--format", "json-array", "--coordinator", grpcAddr, "--cache", "s.db",
		"--metrics-listen", metrics["scorer"])
	run("loadgen", "--brokers", kafka, "--format", "json-array", "--features", "4", "--rate", "200")
	// The scorer's lag is read from the brokers every 5 s once it
	// consumes; the trainer's kernel gauge appears at its first Welcome.
	want := map[string]string{"coordinator": "recon_coordinator_workers 1", "trainer": "recon_trainer_kernels{", "scorer": "recon_scorer_consumer_lag{"}
	exported := map[string]bool{}
	for name, addr := range metrics {
		var text string
		if !within(90*time.Second, func() bool {
			resp, err := http.Get("http://" + addr + "/metrics")
			if err != nil {
				return false
			}
			var b bytes.Buffer
			_, rerr := b.ReadFrom(resp.Body)
			resp.Body.Close()
			text = b.String()
			return rerr == nil && strings.Contains(text, want[name])
		}) {
			t.Fatalf("%s's /metrics never showed %q:\n%s", name, want[name], text)
		}
		sc := bufio.NewScanner(strings.NewReader(text))
		for sc.Scan() {
			line := sc.Text()
			if line == "" || line[0] == '#' {
				continue
			}
			n := line[:strings.IndexAny(line, "{ ")]
			exported[n] = true
		}
	}
	return exported
}

func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var ls []net.Listener
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// within waits until cond holds, looking every 250 ms, and reports whether
// it did within timeout (deploy is its own module: recon's internal
// testkit is out of its reach).
func within(timeout time.Duration, cond func() bool) bool {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for !cond() {
		select {
		case <-deadline:
			return cond()
		case <-tick.C:
		}
	}
	return true
}
