package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/recon-ad/recon/internal/fit"
	"github.com/recon-ad/recon/pkg/ae"
)

func TestParseEnvAndFlags(t *testing.T) {
	t.Setenv("RECON_NOISE_SIGMA", "0.7")
	t.Setenv("RECON_CODE", "5")
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	m := AddModelFlags(fs)
	if err := Parse(fs, []string{"--code", "3", "--variant", "denoising"}); err != nil {
		t.Fatal(err)
	}
	s, auto, err := m.Spec()
	if err != nil {
		t.Fatal(err)
	}
	if s.Code != 3 || s.NoiseSigma != 0.7 || s.Variant != ae.Denoising || !auto {
		t.Errorf("spec %+v auto %v: want code 3 from the flag over RECON_CODE, sigma 0.7 from the environment", s, auto)
	}
	if def := fit.Default().Spec; s.Activation != def.Activation || s.CodeActivation != def.CodeActivation || s.Output != def.Output || s.Trim != def.Trim {
		t.Errorf("default activations %v %v %v, trim %v; want fit.Default's %v %v %v, %v",
			s.Activation, s.CodeActivation, s.Output, s.Trim, def.Activation, def.CodeActivation, def.Output, def.Trim)
	}
}

func TestParseErrorsAreUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		env, args []string
	}{
		{args: []string{"--code", "x"}},
		{args: []string{"stray"}},
		{env: []string{"RECON_CODE", "many"}},
	} {
		if tc.env != nil {
			t.Setenv(tc.env[0], tc.env[1])
		}
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		AddModelFlags(fs)
		err := Parse(fs, tc.args)
		if !errors.Is(err, ErrUsage) {
			t.Errorf("%v %v: %v, want a usage error", tc.env, tc.args, err)
		}
	}
}

func TestModelFlagsSpec(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		check   func(ae.Spec) bool
		wantErr bool
	}{
		{args: []string{"--hidden", "32,8", "--code", "4"}, check: func(s ae.Spec) bool { return len(s.Hidden) == 2 && s.Hidden[1] == 8 }},
		{args: []string{"--hidden", ""}, check: func(s ae.Spec) bool { return s.Hidden != nil && len(s.Hidden) == 0 }},
		{args: []string{"--variant", "sparse-kl"}, check: func(s ae.Spec) bool { return s.CodeActivation == ae.Sigmoid }},
		{args: []string{"--noise", "masking", "--variant", "denoising"}, check: func(s ae.Spec) bool { return s.Noise == ae.MaskingNoise }},
		{args: []string{"--hidden", "0"}, wantErr: true},
		{args: []string{"--activation", "swish"}, wantErr: true},
		{args: []string{"--noise", "pink"}, wantErr: true},
		{args: []string{"--code", "-1"}, wantErr: true},
		{args: nil, check: func(s ae.Spec) bool {
			return s.Trim == fit.Default().Spec.Trim && s.Output == fit.Default().Spec.Output
		}},
		{args: []string{"--trim", "0.3"}, check: func(s ae.Spec) bool { return s.Trim == 0.3 }},
		{args: []string{"--trim", "0"}, check: func(s ae.Spec) bool { return s.Trim == 0 }},
		{args: []string{"--trim", "0.6"}, wantErr: true},
		{args: []string{"--trim", "-0.1"}, wantErr: true},
		{args: []string{"--trim", "NaN"}, wantErr: true},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		m := AddModelFlags(fs)
		if err := Parse(fs, tc.args); err != nil {
			t.Fatal(err)
		}
		s, _, err := m.Spec()
		if tc.wantErr {
			if !errors.Is(err, ErrUsage) {
				t.Errorf("%v: %v, want a usage error", tc.args, err)
			}
			continue
		}
		if err != nil || !tc.check(s) {
			t.Errorf("%v: spec %+v, err %v", tc.args, s, err)
		}
	}
}

// TestConfigDumpRedactsSecrets: the configuration logged at start names
// every flag, in JSON when asked, and never a password.
func TestConfigDumpRedactsSecrets(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	lf := AddLogFlags(fs)
	AddKafkaFlags(fs)
	fs.String("brokers", "", "brokers")
	fs.String("webhook-url", "", "webhook")
	t.Setenv("RECON_KAFKA_SASL_PASSWORD", "hunter2")
	if err := Parse(fs, []string{"--log-format", "json", "--brokers", "k:9092", "--kafka-sasl-username", "svc",
		"--webhook-url", "https://bot:tok3n@hooks.example/a?token=s3cret,http://am:9093"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	lf.out = &buf
	if _, err := lf.Logger(fs); err != nil {
		t.Fatal(err)
	}
	var line struct {
		Msg   string            `json:"msg"`
		Flags map[string]string `json:"flags"`
	}
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON object: %v\n%s", err, buf.String())
	}
	if strings.Contains(buf.String(), "hunter2") || line.Flags["kafka-sasl-password"] != "[redacted]" {
		t.Errorf("the password leaks: %s", buf.String())
	}
	if got := line.Flags["webhook-url"]; strings.Contains(buf.String(), "tok3n") || strings.Contains(buf.String(), "s3cret") ||
		!strings.Contains(got, "hooks.example/a") || !strings.Contains(got, "http://am:9093") {
		t.Errorf("webhook-url logged as %q: want its host and path, not its credentials or query", got)
	}
	if line.Msg != "configuration" || line.Flags["brokers"] != "k:9092" || line.Flags["kafka-sasl-username"] != "svc" {
		t.Errorf("configuration line %+v", line)
	}
	if _, err := newLogger("info", "yaml", &buf); err == nil {
		t.Error("--log-format yaml: no error")
	}
}

// TestExitCodes: the status and the line a command's error ends it with;
// help asked for (Parse's flag.ErrHelp, wrapped or not) exits 0 silently.
func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		line string
	}{
		{nil, 0, ""},
		{flag.ErrHelp, 0, ""},
		{fmt.Errorf("admin: %w", flag.ErrHelp), 0, ""},
		{Usagef("--top -1: must not be negative"), ExitUsage, "cmd: usage: --top -1: must not be negative\n"},
		{Permanent(errors.New("refused")), ExitUsage, "cmd: refused\n"},
		{errors.New("disk full"), ExitError, "cmd: disk full\n"},
	} {
		var buf bytes.Buffer
		if code := exitCode(&buf, "cmd", tc.err); code != tc.code || buf.String() != tc.line {
			t.Errorf("exitCode(%v) = %d, %q; want %d, %q", tc.err, code, buf.String(), tc.code, tc.line)
		}
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Usage = func() {}
	if err := Parse(fs, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("Parse -h: %v, want flag.ErrHelp", err)
	}
}
