package cli

import "testing"

// Every binary's registry exports recon_build_info at 1 with its version,
// revision and Go version.
func TestRegistryHasBuildInfo(t *testing.T) {
	fams, err := Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != "recon_build_info" {
			continue
		}
		m := f.GetMetric()[0]
		if v := m.GetGauge().GetValue(); v != 1 {
			t.Errorf("recon_build_info = %v, want 1", v)
		}
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for _, k := range []string{"version", "revision", "goversion"} {
			if labels[k] == "" {
				t.Errorf("recon_build_info has no %s label: %v", k, labels)
			}
		}
		return
	}
	t.Fatal("recon_build_info is not exported")
}
