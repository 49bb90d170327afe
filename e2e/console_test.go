//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/recon-ad/recon/internal/procs"
	"github.com/recon-ad/recon/internal/scorer"
	"github.com/recon-ad/recon/internal/testkit"
	"github.com/recon-ad/recon/pkg/stream"
)

const consoleToken = "e2e-console-token-0123456789"

// TestConsoleInABrowser drives the console in headless Chromium against
// the whole pipeline (devkafka, a coordinator, two trainers, two scorers,
// loadgen keying records by 20 devices): an injected anomaly's alert
// appears in the live feed; opened, its bars carry exactly the alert's
// features (read from the alerts topic, not from the console); a rollback
// with the token publishes a new version that the page shows and every
// scorer reaches; without the token the console answers 401 and the
// coordinator rolls nothing back; a read-only console offers no action.
// A screenshot of each page goes to RECON_SCREENSHOTS (default: the test's
// temporary directory; make screenshots writes docs/console/).
// RECON_CHROMIUM names the browser (make e2e sets Debian's chromium).
func TestConsoleInABrowser(t *testing.T) {
	chrome := os.Getenv("RECON_CHROMIUM")
	if chrome == "" {
		t.Skip("RECON_CHROMIUM is not set: make e2e sets it to Debian's chromium (apt-get install chromium)")
	}
	shots := os.Getenv("RECON_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	p := startPipelineArgs(t, 2000, 0, nil, []string{"--keys", "20"})
	tokenFile := filepath.Join(p.dir, "console.token")
	write(t, tokenFile, consoleToken+"\n")
	rwAddr, roAddr := addr(t), addr(t)
	consoleArgs := func(listen string, more ...string) []string {
		return append([]string{"--listen", listen, "--brokers", p.kafka, "--coordinator", p.coordGRPC, "--rollback-token-file", tokenFile}, more...)
	}
	rw := procs.New(binDir, p.dir, "console", "console", consoleArgs(rwAddr)...)
	ro := procs.New(binDir, p.dir, "console-ro", "console", consoleArgs(roAddr, "--read-only")...)
	for _, c := range []*procs.Proc{rw, ro} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("---- %s log (last 4000 bytes):\n%s", c.Name, tail(c.LogText(), 4000))
			}
			c.Kill()
		})
	}
	for _, a := range []string{rwAddr, roAddr} {
		waitFor(t, 20*time.Second, "the console to answer", func() bool {
			resp, err := http.Get("http://" + a + "/livez")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil && resp.StatusCode == 200
		})
	}

	// The truth of every record and every alert, straight from the topics.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	truth, alerts := map[string]string{}, map[string]scorer.Alert{}
	// Both readers run until the test ends (ctx); one that fails sooner
	// leaves truth or alerts short, which the checks below catch.
	go func() {
		_ = readAll(ctx, []string{p.kafka}, "recon-events", func(m stream.Record) bool {
			mu.Lock()
			truth[fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset)] = header(m, "recon-truth")
			mu.Unlock()
			return true
		})
	}()
	go func() {
		_ = readAll(ctx, []string{p.kafka}, "recon-alerts", func(m stream.Record) bool {
			var a scorer.Alert
			if json.Unmarshal(m.Value, &a) == nil {
				mu.Lock()
				alerts[a.ID] = a
				mu.Unlock()
			}
			return true
		})
	}()

	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(chrome), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1360, 960))
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	// Accept the rollback's confirmation dialog.
	dialogs := chromedp.Events(bctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true}) // not accepted, the roll back step below times out
		}
	}()
	browse := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		c, cancel := context.WithTimeout(bctx, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(c, actions...); err != nil {
			t.Fatalf("browser: %s: %v", what, err)
		}
	}
	eval := func(js string, out any) {
		t.Helper()
		c, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		raw, err := chromedp.Run(c, chromedp.Evaluate[[]byte](js))
		if err != nil {
			t.Fatalf("browser: evaluate %s: %v", js, err)
		}
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("browser: evaluate %s: %v (%s)", js, err, raw)
		}
	}
	shot := func(name string) {
		t.Helper()
		browse("settle "+name, chromedp.Sleep(300*time.Millisecond)) // let the last draw land (simulates nothing: a paint)
		c, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(c, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("browser: screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rwURL := "http://" + rwAddr + "/"

	// An injected anomaly's alert appears in the live feed.
	browse("open the alerts page", chromedp.Navigate(rwURL+"#/alerts"), chromedp.WaitVisible(chromedp.CSS("#conn.live")))
	var id string
	waitFor(t, 150*time.Second, "an injected anomaly's alert in the console's feed", func() bool {
		var ids []string
		eval(`[...document.querySelectorAll("#alerts-feed tr.alert-row")].map(r => r.dataset.id)`, &ids)
		mu.Lock()
		defer mu.Unlock()
		for _, i := range ids {
			_, read := alerts[i]
			if tr := truth[i]; read && tr != "" && tr != "normal" {
				id = i
				return true
			}
		}
		return false
	})
	mu.Lock()
	want := alerts[id]
	t.Logf("alert %s (truth %s) in the feed", id, truth[id])
	mu.Unlock()

	// Opened (a click on its row: the feed redraws every second, so the
	// click is the row's own, not a mouse event at where it was drawn), its
	// bars are the alert's features.
	var clicked bool
	eval(`(() => { const r = document.querySelector('#alerts-feed tr.alert-row[data-id="`+id+`"]'); if (r) r.click(); return !!r })()`, &clicked)
	if !clicked {
		t.Fatalf("alert %s left the feed's first rows before it could be opened", id)
	}
	browse("open the alert", chromedp.WaitVisible(chromedp.CSS("#feature-bars .feature-bar")))
	var bars []struct{ Name, Listed, Value, Reconstruction, Error string }
	eval(`[...document.querySelectorAll("#feature-bars .feature-bar")].map(g => ({Name: g.dataset.name, Listed: g.dataset.listed, Value: g.dataset.value, Reconstruction: g.dataset.reconstruction, Error: g.dataset.error}))`, &bars)
	listed := map[string]int{}
	for i, b := range bars {
		if b.Listed == "true" {
			listed[b.Name] = i
		}
	}
	// Recomputed from the record and the checkpoint, every feature is
	// drawn; the alert's listed ones carry its own figures.
	if len(bars) < 15 || len(listed) != len(want.Features) || len(want.Features) == 0 {
		t.Fatalf("%d bars, %d of them listed; the alert lists %d features (every one of the 30 should be drawn, up to 15 and the listed)", len(bars), len(listed), len(want.Features))
	}
	for _, f := range want.Features {
		i, ok := listed[f.Name]
		if !ok {
			t.Errorf("the alert's feature %s has no listed bar", f.Name)
			continue
		}
		b := bars[i]
		v, _ := strconv.ParseFloat(b.Value, 64)
		r, _ := strconv.ParseFloat(b.Reconstruction, 64)
		e, _ := strconv.ParseFloat(b.Error, 64)
		if v != f.Value || r != f.Reconstruction || e != f.Error {
			t.Errorf("bar %s: %+v; the alert's feature: %+v", f.Name, b, f)
		}
	}
	var notes string
	eval(`document.querySelector("#main").innerText`, &notes)
	if !strings.Contains(notes, "% of the score") || strings.Contains(notes, "not the alert's") || strings.Contains(notes, "could not be recomputed") {
		t.Errorf("the alert page does not show every feature's part of a matching score:\n%.2000s", notes)
	}
	var neighbours int
	eval(`document.querySelectorAll("#main table tr").length`, &neighbours)
	shot("alert")

	// A rollback with the token: the page shows the new version reaching
	// every scorer.
	browse("open the models page", chromedp.Navigate(rwURL+"#/models"), chromedp.WaitVisible(chromedp.CSS(`.rollback-btn:not([data-threshold="0"])`)))
	var target string
	// The oldest version with a threshold (one without would leave the
	// scorers raising nothing until the coordinator sets one).
	eval(`[...document.querySelectorAll(".rollback-btn")].filter(b => b.dataset.threshold !== "0").pop().dataset.version`, &target)
	browse("roll back", chromedp.SendKeys(chromedp.CSS("#token"), consoleToken), chromedp.Click(chromedp.CSS(`.rollback-btn[data-version="`+target+`"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS("#rollback-status")))
	var published string
	eval(`document.querySelector("#rollback-status").dataset.published`, &published)
	waitFor(t, 30*time.Second, "every scorer on the rolled-back version, on the page", func() bool {
		var st struct{ On, Of, Latest string }
		eval(`(() => { const s = document.querySelector("#rollback-status"); return s ? {On: s.dataset.scorersOn, Of: s.dataset.scorers, Latest: document.querySelector("#model-latest").textContent} : {} })()`, &st)
		latest, _ := strconv.Atoi(strings.TrimPrefix(st.Latest, "v"))
		pub, _ := strconv.Atoi(published)
		return st.Of == "2" && st.On == st.Of && latest >= pub
	})
	shot("models")
	if n := strings.Count(p.coord.LogText(), `msg="rolled back" from=`+target+" "); n != 1 {
		t.Errorf("the coordinator logged %d rollbacks from %s, want 1", n, target)
	}
	t.Logf("rolled back to v%s: published v%s, both scorers on it; the alert page had %d table rows", target, published, neighbours)

	// The other pages, now that the stream has run a while.
	browse("open the alerts page again", chromedp.Navigate(rwURL+"#/alerts"), chromedp.WaitVisible(chromedp.CSS("#alerts-feed tr.alert-row")))
	shot("alerts")
	browse("open the scores page", chromedp.Navigate(rwURL+"#/scores"), chromedp.WaitVisible(chromedp.CSS("#threshold-line")))
	shot("scores")
	browse("open the overview", chromedp.Navigate(rwURL+"#/overview"), chromedp.WaitVisible(chromedp.CSS("svg.chart path")))
	shot("overview")

	// Without the token: 401, and the coordinator rolls nothing back.
	for _, auth := range []string{"", "Bearer not-the-token"} {
		req, _ := http.NewRequest(http.MethodPost, rwURL+"api/rollback", strings.NewReader(`{"version": `+target+`}`))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("rollback with Authorization %q: %d, want 401", auth, resp.StatusCode)
		}
	}
	if got := scrape(rwAddr, `recon_console_rollbacks_total{result="unauthorized"}`); got != 2 {
		t.Errorf("unauthorized rollbacks counted: %v, want 2", got)
	}
	// A refused rollback that went through anyway would be logged within a
	// second: look for a second line that long, stopping early if it comes.
	testkit.Within(time.Second, func() bool { return strings.Count(p.coord.LogText(), `msg="rolled back"`) > 1 })
	if n := strings.Count(p.coord.LogText(), `msg="rolled back"`); n != 1 {
		t.Errorf("the coordinator logged %d rollbacks, want the one with the token", n)
	}

	// Read-only: no token field, no button, and the endpoint refuses.
	browse("open the read-only console", chromedp.Navigate("http://"+roAddr+"/#/models"), chromedp.WaitVisible(chromedp.CSS("#models-table tr[data-version]")))
	var actions int
	eval(`document.querySelectorAll(".rollback-btn, #token").length`, &actions)
	if actions != 0 {
		t.Errorf("the read-only console shows %d rollback controls", actions)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+roAddr+"/api/rollback", strings.NewReader(`{"version": `+target+`}`))
	req.Header.Set("Authorization", "Bearer "+consoleToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("read-only console: rollback %d, want 403", resp.StatusCode)
	}
}
