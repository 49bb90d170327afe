package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// kustomizations are every kustomization in deploy/k8s.
var kustomizations = []string{"k8s/base", "k8s/overlays/strimzi", "k8s/overlays/keda"}

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "recon-deploy-bin")
	if err != nil {
		panic(err)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/coordinator", "./cmd/trainer", "./cmd/scorer")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// strict decodes JSON into v, failing on any field v does not have.
func strict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// Custom resources of the overlays, with the fields recon uses.
type kafkaTopic struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Partitions int            `json:"partitions"`
		Replicas   int            `json:"replicas"`
		Config     map[string]any `json:"config"`
	} `json:"spec"`
}

type scaledObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount int `json:"minReplicaCount"`
		MaxReplicaCount int `json:"maxReplicaCount"`
		PollingInterval int `json:"pollingInterval"`
		CooldownPeriod  int `json:"cooldownPeriod"`
		Triggers        []struct {
			Type     string            `json:"type"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// rendered is one kustomization's objects, decoded.
type rendered struct {
	workloads  map[string]*corev1.PodTemplateSpec // by workload name
	services   []corev1.Service
	configMaps []corev1.ConfigMap
	hpas       int
	pdbs       int
	netpols    int
	topics     []kafkaTopic
	scaled     []scaledObject
	namespaces map[string]map[string]bool // namespace -> "Kind/name" of the objects in it
}

func render(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("%s: kustomize: %v", dir, err)
	}
	r := &rendered{workloads: map[string]*corev1.PodTemplateSpec{}, namespaces: map[string]map[string]bool{}}
	for _, res := range rm.Resources() {
		b, err := res.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		kind, name := res.GetKind(), res.GetName()
		if r.namespaces[res.GetNamespace()] == nil {
			r.namespaces[res.GetNamespace()] = map[string]bool{}
		}
		r.namespaces[res.GetNamespace()][kind+"/"+name] = true
		var derr error
		switch kind {
		case "Deployment":
			var d appsv1.Deployment
			derr = strict(b, &d)
			r.workloads[name] = &d.Spec.Template
		case "StatefulSet":
			var s appsv1.StatefulSet
			derr = strict(b, &s)
			r.workloads[name] = &s.Spec.Template
			if len(s.Spec.VolumeClaimTemplates) == 0 || s.Spec.Replicas == nil || *s.Spec.Replicas != 1 {
				t.Errorf("%s: %s: want one replica with a volume claim", dir, name)
			}
		case "Service":
			var s corev1.Service
			derr = strict(b, &s)
			r.services = append(r.services, s)
		case "ConfigMap":
			var c corev1.ConfigMap
			derr = strict(b, &c)
			r.configMaps = append(r.configMaps, c)
		case "ServiceAccount":
			derr = strict(b, &corev1.ServiceAccount{})
		case "NetworkPolicy":
			derr = strict(b, &networkingv1.NetworkPolicy{})
			r.netpols++
		case "HorizontalPodAutoscaler":
			derr = strict(b, &autoscalingv2.HorizontalPodAutoscaler{})
			r.hpas++
		case "PodDisruptionBudget":
			derr = strict(b, &policyv1.PodDisruptionBudget{})
			r.pdbs++
		case "KafkaTopic":
			var kt kafkaTopic
			derr = strict(b, &kt)
			r.topics = append(r.topics, kt)
		case "ScaledObject":
			var so scaledObject
			derr = strict(b, &so)
			r.scaled = append(r.scaled, so)
		default:
			t.Errorf("%s: %s %s: a kind this test does not know", dir, kind, name)
			continue
		}
		if derr != nil {
			t.Errorf("%s: %s %s does not decode strictly: %v", dir, kind, name, derr)
		}
	}
	return r
}

// flagsOf returns the flags a command accepts, from its -h.
func flagsOf(t *testing.T, argv ...string) map[string]bool {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, filepath.Base(argv[0])), append(argv[1:], "-h")...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v -h: %v", argv, err)
	}
	flags := map[string]bool{}
	for _, ln := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(ln, "  -") {
			flags[strings.Fields(strings.TrimPrefix(ln, "  -"))[0]] = true
		}
	}
	return flags
}

// portOf returns the port of a host:port flag value.
func portOf(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// TestKustomizations renders every kustomization, decodes every object
// strictly, and checks each container against the binary it runs: every
// argument and RECON_* variable is a flag it accepts, the ports and probes
// are the ones it serves, and the security context holds.
func TestKustomizations(t *testing.T) {
	for _, dir := range kustomizations {
		r := render(t, dir)
		if len(r.workloads) != 3 || r.netpols == 0 || r.pdbs != 1 {
			t.Errorf("%s: %d workloads, %d network policies, %d disruption budgets", dir, len(r.workloads), r.netpols, r.pdbs)
		}
		switch dir {
		case "k8s/overlays/strimzi":
			if len(r.topics) != 4 {
				t.Errorf("%s: %d KafkaTopics, want events, alerts, dead letters and scores", dir, len(r.topics))
			}
			// recon's own objects in recon, the topics beside the
			// cluster: the topic operator watches its namespace only.
			if len(r.namespaces) != 2 || len(r.namespaces["recon"]) == 0 || len(r.namespaces["kafka"]) != len(r.topics) {
				t.Errorf("%s: objects by namespace %v; want recon's in recon and the KafkaTopics in kafka", dir, r.namespaces)
			}
			for _, kt := range r.topics {
				if kt.Metadata.Namespace != "kafka" || kt.Metadata.Labels["strimzi.io/cluster"] != "my-cluster" {
					t.Errorf("%s: KafkaTopic %s in namespace %q for cluster %q; want kafka, my-cluster", dir,
						kt.Metadata.Name, kt.Metadata.Namespace, kt.Metadata.Labels["strimzi.io/cluster"])
				}
			}
		case "k8s/overlays/keda":
			if len(r.namespaces) != 1 || len(r.namespaces["recon"]) == 0 {
				t.Errorf("%s: objects by namespace %v; want all in recon", dir, r.namespaces)
			}
			if len(r.scaled) != 1 || r.hpas != 0 || r.scaled[0].Spec.ScaleTargetRef.Name != "recon-scorer" {
				t.Errorf("%s: %d ScaledObjects and %d HPAs; want KEDA alone to scale the scorers", dir, len(r.scaled), r.hpas)
			}
		default:
			if r.hpas != 1 {
				t.Errorf("%s: %d HPAs", dir, r.hpas)
			}
		}
		env := map[string]string{}
		for _, c := range r.configMaps {
			for k, v := range c.Data {
				env[k] = v
			}
		}
		known := map[string]bool{} // the flags of every binary the rendering runs
		for name, tmpl := range r.workloads {
			maps.Copy(known, checkPod(t, dir+": "+name, tmpl))
		}
		// The ConfigMaps are shared: each key names a flag of one of them.
		for k := range env {
			if name := envFlag(k); name == "" || !known[name] {
				t.Errorf("%s: ConfigMap key %s names no flag of the binaries it runs", dir, k)
			}
		}
		for _, s := range r.services {
			for _, p := range s.Spec.Ports {
				if p.TargetPort.Type != intstr.String {
					t.Errorf("%s: service %s port %s targets a number, not a named container port", dir, s.Name, p.Name)
				}
			}
		}
	}
}

// checkPod checks a workload's pod and returns the flags its binaries accept.
func checkPod(t *testing.T, where string, tmpl *corev1.PodTemplateSpec) map[string]bool {
	known := map[string]bool{}
	ps := tmpl.Spec
	psc := ps.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: the pod must run as a non-root user with the runtime's seccomp profile", where)
	}
	if ps.ServiceAccountName != "recon" || ps.AutomountServiceAccountToken == nil || *ps.AutomountServiceAccountToken {
		t.Errorf("%s: service account recon, without an API token", where)
	}
	if a := tmpl.Annotations; a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("%s: no Prometheus scrape annotations", where)
	}
	for _, c := range ps.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot ||
			sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
			t.Errorf("%s/%s: securityContext must forbid privilege escalation, make the root filesystem read-only, run as non-root and drop ALL capabilities", where, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() ||
			c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: CPU and memory requests and limits", where, c.Name)
		}
		if len(c.Command) != 1 || !strings.HasPrefix(c.Command[0], "/recon/") {
			t.Errorf("%s/%s: command %v: want one of the image's /recon/ binaries", where, c.Name, c.Command)
			continue
		}
		argv := []string{c.Command[0]}
		args := c.Args
		if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
			argv, args = append(argv, args[0]), args[1:] // a subcommand
		}
		flags := flagsOf(t, argv...)
		maps.Copy(known, flags)
		values := map[string]string{}
		for _, a := range args {
			name, val, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !strings.HasPrefix(a, "--") || !ok {
				t.Errorf("%s/%s: argument %q: want --flag=value", where, c.Name, a)
				continue
			}
			if !flags[name] {
				t.Errorf("%s/%s: --%s is not a flag of %v", where, c.Name, name, argv)
			}
			values[name] = val
		}
		// Variables from the container and its ConfigMaps: each names a
		// flag of this binary, or (ConfigMaps shared by all) of none here.
		for _, e := range c.Env {
			if name := envFlag(e.Name); name == "" || !flags[name] {
				t.Errorf("%s/%s: %s is not a flag of %v", where, c.Name, e.Name, argv)
			}
		}
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if addr, ok := values["metrics-listen"]; !ok || ports["metrics"] != int32(portOf(t, addr)) {
			t.Errorf("%s/%s: containerPort metrics %d, --metrics-listen %q", where, c.Name, ports["metrics"], addr)
		}
		if addr, ok := values["listen"]; ok && ports["grpc"] != int32(portOf(t, addr)) {
			t.Errorf("%s/%s: containerPort grpc %d, --listen %q", where, c.Name, ports["grpc"], addr)
		}
		for kind, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			switch {
			case p == nil:
				t.Errorf("%s/%s: no %s probe", where, c.Name, kind)
			case p.GRPC != nil:
				if _, ok := values["listen"]; !ok || p.GRPC.Port != ports["grpc"] {
					t.Errorf("%s/%s: %s gRPC probe on %d, the gRPC port is %d", where, c.Name, kind, p.GRPC.Port, ports["grpc"])
				}
				if s := p.GRPC.Service; s != nil && *s != "" && *s != "recon.v1.Coordinator" {
					t.Errorf("%s/%s: %s probe of service %q, which the health server does not know", where, c.Name, kind, *s)
				}
			case p.HTTPGet != nil:
				if p.HTTPGet.Path != "/healthz" || p.HTTPGet.Port.StrVal != "metrics" {
					t.Errorf("%s/%s: %s probe %s on %s: want /healthz on the metrics port", where, c.Name, kind, p.HTTPGet.Path, p.HTTPGet.Port.String())
				}
			default:
				t.Errorf("%s/%s: %s probe of an unexpected kind", where, c.Name, kind)
			}
		}
	}
	return known
}

// envFlag returns the flag RECON_X_Y names (x-y), or "".
func envFlag(name string) string {
	if !strings.HasPrefix(name, "RECON_") {
		return ""
	}
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(name, "RECON_"), "_", "-"))
}
