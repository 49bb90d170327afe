package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/kustomize/kyaml/yaml"
)

// kustomizations are every kustomization in deploy/k8s (components/ holds
// kustomize Components, rendered through the overlays that use them).
var kustomizations = []string{"k8s/base", "k8s/overlays/strimzi", "k8s/overlays/keda"}

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "recon-deploy-bin")
	if err != nil {
		panic(err)
	}
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/coordinator", "./cmd/trainer", "./cmd/scorer", "./cmd/devkafka", "./cmd/loadgen")
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
type objectMeta struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace"`
	Labels    map[string]string `json:"labels"`
}

type kafkaTopic struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Partitions int            `json:"partitions"`
		Replicas   int            `json:"replicas"`
		Config     map[string]any `json:"config"`
	} `json:"spec"`
}

// kafkaUser is a Strimzi KafkaUser (kafka.strimzi.io/v1beta2).
type kafkaUser struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		Authentication struct {
			Type string `json:"type"`
		} `json:"authentication"`
		Authorization struct {
			Type string    `json:"type"`
			ACLs []aclRule `json:"acls"`
		} `json:"authorization"`
	} `json:"spec"`
}

type aclRule struct {
	Type     string `json:"type"` // allow (the default) or deny
	Resource struct {
		Type        string `json:"type"` // topic, group, cluster, transactionalId
		Name        string `json:"name"`
		PatternType string `json:"patternType"` // literal (the default) or prefix
	} `json:"resource"`
	Host       string   `json:"host"`
	Operation  string   `json:"operation"` // deprecated: one operation
	Operations []string `json:"operations"`
}

type scaledObject struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		ScaleTargetRef struct {
			Name                   string `json:"name"`
			EnvSourceContainerName string `json:"envSourceContainerName"`
		} `json:"scaleTargetRef"`
		MinReplicaCount int `json:"minReplicaCount"`
		MaxReplicaCount int `json:"maxReplicaCount"`
		PollingInterval int `json:"pollingInterval"`
		CooldownPeriod  int `json:"cooldownPeriod"`
		Triggers        []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

// triggerAuthentication is a KEDA TriggerAuthentication (keda.sh/v1alpha1).
type triggerAuthentication struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   objectMeta `json:"metadata"`
	Spec       struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
		Env []struct {
			Parameter     string `json:"parameter"`
			Name          string `json:"name"`
			ContainerName string `json:"containerName"`
		} `json:"env"`
	} `json:"spec"`
}

// rendered is one kustomization's objects, decoded.
type rendered struct {
	dir          string
	workloads    map[string]*corev1.PodTemplateSpec // by workload name
	statefulSets []appsv1.StatefulSet
	services     []corev1.Service
	configMaps   []corev1.ConfigMap
	hpas         int
	pdbs         int
	netpols      []networkingv1.NetworkPolicy
	topics       []kafkaTopic
	users        []kafkaUser
	scaled       []scaledObject
	triggerAuths []triggerAuthentication
	namespaces   map[string]map[string]bool // namespace -> "Kind/name" of the objects in it
}

func render(t *testing.T, dir string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("%s: kustomize: %v", dir, err)
	}
	r := &rendered{dir: dir, workloads: map[string]*corev1.PodTemplateSpec{}, namespaces: map[string]map[string]bool{}}
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
			r.statefulSets = append(r.statefulSets, s)
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
			var np networkingv1.NetworkPolicy
			derr = strict(b, &np)
			r.netpols = append(r.netpols, np)
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
		case "KafkaUser":
			var ku kafkaUser
			derr = strict(b, &ku)
			r.users = append(r.users, ku)
		case "ScaledObject":
			var so scaledObject
			derr = strict(b, &so)
			r.scaled = append(r.scaled, so)
		case "TriggerAuthentication":
			var ta triggerAuthentication
			derr = strict(b, &ta)
			r.triggerAuths = append(r.triggerAuths, ta)
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

// container returns the workload and the container that run binary (a
// path such as /recon/scorer), failing the test if there is none.
func (r *rendered) container(t *testing.T, binary string) (string, *corev1.PodTemplateSpec, *corev1.Container) {
	t.Helper()
	for name, tmpl := range r.workloads {
		for i, c := range tmpl.Spec.Containers {
			if len(c.Command) > 0 && c.Command[0] == binary {
				return name, tmpl, &tmpl.Spec.Containers[i]
			}
		}
	}
	t.Fatalf("%s: no container runs %s", r.dir, binary)
	return "", nil, nil
}

// env returns the variables container c sees: those of its ConfigMaps,
// then its own. One taken from a Secret reads "secret:NAME/KEY".
func (r *rendered) env(c *corev1.Container) map[string]string {
	env := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			continue
		}
		for _, cm := range r.configMaps {
			if cm.Name == from.ConfigMapRef.Name {
				maps.Copy(env, cm.Data)
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			env[e.Name] = "secret:" + e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
		}
	}
	return env
}

// config returns the value of every flag of container c as the binary
// would set it: its default (from its -h), then the RECON_* variables it
// sees, then its arguments.
func (r *rendered) config(t *testing.T, c *corev1.Container) map[string]string {
	t.Helper()
	argv, args := argvOf(c)
	cfg := helpOf(t, argv...)
	for k, v := range r.env(c) {
		if name := envFlag(k); name != "" {
			if _, ok := cfg[name]; ok {
				cfg[name] = v
			}
		}
	}
	for _, a := range args {
		if name, val, ok := strings.Cut(strings.TrimLeft(a, "-"), "="); ok {
			cfg[name] = val
		}
	}
	return cfg
}

// argvOf returns the binary and subcommand a container runs, and the
// arguments after them.
func argvOf(c *corev1.Container) (argv, args []string) {
	argv, args = []string{c.Command[0]}, c.Args
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		argv, args = append(argv, args[0]), args[1:] // a subcommand
	}
	return argv, args
}

var (
	helpCache = map[string]map[string]string{}
	defaultRE = regexp.MustCompile(`\(default (.*)\)\s*$`)
	imageRE   = regexp.MustCompile(`(?m)^\s*-?\s*image:\s*(\S+)`)
	releaseRE = regexp.MustCompile(`^v\d+\.\d+\.\d+$`)
)

// helpOf returns the flags a command accepts and their defaults ("" when
// it prints none), from its -h.
func helpOf(t *testing.T, argv ...string) map[string]string {
	t.Helper()
	key := strings.Join(argv, " ")
	if h, ok := helpCache[key]; ok {
		return maps.Clone(h)
	}
	out, err := exec.Command(filepath.Join(binDir, filepath.Base(argv[0])), append(argv[1:], "-h")...).CombinedOutput()
	if err != nil {
		t.Fatalf("%v -h: %v", argv, err)
	}
	flags := map[string]string{}
	name := ""
	for _, ln := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(ln, "  -") {
			name = strings.Fields(strings.TrimPrefix(ln, "  -"))[0]
			flags[name] = ""
		} else if !strings.HasPrefix(ln, "    ") {
			name = ""
		}
		if m := defaultRE.FindStringSubmatch(ln); name != "" && m != nil {
			v := m[1]
			if u, err := strconv.Unquote(v); err == nil {
				v = u
			}
			flags[name] = v
		}
	}
	helpCache[key] = flags
	return maps.Clone(flags)
}

// flagsOf returns the flags a command accepts, from its -h.
func flagsOf(t *testing.T, argv ...string) map[string]bool {
	t.Helper()
	flags := map[string]bool{}
	for name := range helpOf(t, argv...) {
		flags[name] = true
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
		if len(r.workloads) != 3 || len(r.netpols) == 0 || r.pdbs != 1 {
			t.Errorf("%s: %d workloads, %d network policies, %d disruption budgets", dir, len(r.workloads), len(r.netpols), r.pdbs)
		}
		if len(r.topics) > 0 { // the Strimzi overlay, and the KEDA one on top of it
			if len(r.topics) != 4 || len(r.users) != 1 {
				t.Errorf("%s: %d KafkaTopics and %d KafkaUsers, want events, alerts, dead letters and scores, and recon", dir, len(r.topics), len(r.users))
			}
			// recon's own objects in recon, the topics and the user
			// beside the cluster: its operators watch their namespace only.
			if len(r.namespaces) != 2 || len(r.namespaces["recon"]) == 0 || len(r.namespaces["kafka"]) != len(r.topics)+len(r.users) {
				t.Errorf("%s: objects by namespace %v; want recon's in recon and the KafkaTopics and KafkaUser in kafka", dir, r.namespaces)
			}
			for _, m := range append(metas(r.topics, func(k kafkaTopic) objectMeta { return k.Metadata }),
				metas(r.users, func(k kafkaUser) objectMeta { return k.Metadata })...) {
				if m.Namespace != "kafka" || m.Labels["strimzi.io/cluster"] != "my-cluster" {
					t.Errorf("%s: %s in namespace %q for cluster %q; want kafka, my-cluster", dir,
						m.Name, m.Namespace, m.Labels["strimzi.io/cluster"])
				}
			}
		} else if len(r.namespaces) != 1 {
			t.Errorf("%s: objects by namespace %v; want all in one", dir, r.namespaces)
		}
		if len(r.scaled) > 0 {
			if len(r.scaled) != 1 || r.hpas != 0 || r.scaled[0].Spec.ScaleTargetRef.Name != "recon-scorer" {
				t.Errorf("%s: %d ScaledObjects and %d HPAs; want KEDA alone to scale the scorers", dir, len(r.scaled), r.hpas)
			}
		} else if r.hpas != 1 {
			t.Errorf("%s: %d HPAs", dir, r.hpas)
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

func metas[T any](xs []T, f func(T) objectMeta) []objectMeta {
	var ms []objectMeta
	for _, x := range xs {
		ms = append(ms, f(x))
	}
	return ms
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
	a := tmpl.Annotations
	if a["prometheus.io/scrape"] != "true" || a["prometheus.io/path"] != "/metrics" {
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
		argv, args := argvOf(&c)
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
		// Every binary's metrics listener is given explicitly (the
		// defaults are loopback addresses), on the port the pod declares
		// and Prometheus is told.
		if addr, ok := values["metrics-listen"]; !ok || ports["metrics"] != int32(portOf(t, addr)) {
			t.Errorf("%s/%s: containerPort metrics %d, --metrics-listen %q", where, c.Name, ports["metrics"], addr)
		}
		if p := a["prometheus.io/port"]; p != strconv.Itoa(int(ports["metrics"])) {
			t.Errorf("%s/%s: prometheus.io/port %q, the metrics port is %d", where, c.Name, p, ports["metrics"])
		}
		if addr, ok := values["listen"]; ok && ports["grpc"] != int32(portOf(t, addr)) {
			t.Errorf("%s/%s: containerPort grpc %d, --listen %q", where, c.Name, ports["grpc"], addr)
		}
		_, grpcServer := values["listen"]
		for kind, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
			path := map[string]string{"liveness": "/livez", "readiness": "/readyz"}[kind]
			switch {
			case p == nil:
				t.Errorf("%s/%s: no %s probe", where, c.Name, kind)
			case p.GRPC != nil && grpcServer: // the coordinator: grpc.health.v1
				if p.GRPC.Port != ports["grpc"] {
					t.Errorf("%s/%s: %s gRPC probe on %d, the gRPC port is %d", where, c.Name, kind, p.GRPC.Port, ports["grpc"])
				}
				if s := p.GRPC.Service; s != nil && *s != "" && *s != "recon.v1.Coordinator" {
					t.Errorf("%s/%s: %s probe of service %q, which the health server does not know", where, c.Name, kind, *s)
				}
			case p.HTTPGet != nil:
				if p.HTTPGet.Path != path || p.HTTPGet.Port.StrVal != "metrics" {
					t.Errorf("%s/%s: %s probe %s on %s: want %s on the metrics port", where, c.Name, kind, p.HTTPGet.Path, p.HTTPGet.Port.String(), path)
				}
			default:
				t.Errorf("%s/%s: %s probe of an unexpected kind: want %s on the metrics port", where, c.Name, kind, path)
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

// TestImage checks that the image is pinned, in one place: no file under
// deploy/k8s says ":latest", every workload says only "image: recon", and
// the one images: entry (in the base) gives it a name and a release tag,
// which every rendering's every container runs.
func TestImage(t *testing.T) {
	var entries []string // "file: name -> newName:newTag"
	var want string
	err := filepath.WalkDir("k8s", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(":latest")) {
			t.Errorf("%s says :latest", p)
		}
		for _, m := range imageRE.FindAllSubmatch(b, -1) {
			if string(m[1]) != "recon" {
				t.Errorf("%s: image: %s; want the bare name recon, set by the base's images: entry", p, m[1])
			}
		}
		if base := filepath.Base(p); base != "kustomization.yaml" {
			return nil
		}
		var k types.Kustomization
		if err := yaml.Unmarshal(b, &k); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, im := range k.Images {
			entries = append(entries, fmt.Sprintf("%s: %s -> %s:%s%s", p, im.Name, im.NewName, im.NewTag, im.Digest))
			if p == filepath.Join("k8s", "base", "kustomization.yaml") && im.Name == "recon" && im.NewName != "" &&
				releaseRE.MatchString(im.NewTag) && im.Digest == "" {
				want = im.NewName + ":" + im.NewTag
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || want == "" {
		t.Fatalf("images: entries %q; want one, in k8s/base, naming recon's image with a vX.Y.Z tag", entries)
	}
	for _, dir := range kustomizations {
		r := render(t, dir)
		for name, tmpl := range r.workloads {
			for _, c := range append(slices.Clone(tmpl.Spec.InitContainers), tmpl.Spec.Containers...) {
				if c.Image != want {
					t.Errorf("%s: %s/%s runs %s, want %s", dir, name, c.Name, c.Image, want)
				}
			}
		}
	}
}

// TestKEDA checks that KEDA reads the lag from the brokers, topic and
// credentials the scorers use: the ScaledObject takes the brokers and the
// topic from the scorer container's own variables, its group is the
// scorer's, and the TriggerAuthentication reads the Secrets the scorer pods
// read (the SASL password) and mount (the CA).
func TestKEDA(t *testing.T) {
	r := render(t, "k8s/overlays/keda")
	if len(r.scaled) != 1 || len(r.scaled[0].Spec.Triggers) != 1 {
		t.Fatalf("want one ScaledObject with one trigger")
	}
	so := r.scaled[0]
	name, tmpl, c := r.container(t, "/recon/scorer")
	if so.Spec.ScaleTargetRef.Name != name || so.Spec.ScaleTargetRef.EnvSourceContainerName != c.Name {
		t.Errorf("ScaledObject scales %s, reading the variables of container %q; want %s, %s", so.Spec.ScaleTargetRef.Name,
			so.Spec.ScaleTargetRef.EnvSourceContainerName, name, c.Name)
	}
	env, cfg := r.env(c), r.config(t, c)
	trig := so.Spec.Triggers[0]
	if trig.Type != "kafka" {
		t.Fatalf("trigger of type %q", trig.Type)
	}
	md := trig.Metadata
	// The brokers and topic: the variable that sets the scorer's flag.
	for param, flag := range map[string]string{"bootstrapServers": "brokers", "topic": "topic"} {
		v := md[param+"FromEnv"]
		if md[param] != "" || envFlag(v) != flag || env[v] == "" || env[v] != cfg[flag] {
			t.Errorf("trigger %s %q, %sFromEnv %q (%q in the scorer): want it from the variable that sets the scorer's --%s (%q)",
				param, md[param], param, v, env[v], flag, cfg[flag])
		}
	}
	if md["consumerGroup"] != cfg["group"] {
		t.Errorf("trigger consumerGroup %q; the scorers' group is %q", md["consumerGroup"], cfg["group"])
	}
	// TLS and SASL as the scorers connect.
	mech := cfg["kafka-sasl-mechanism"]
	kedaSASL := map[string]string{"plain": "plaintext", "scram-sha-256": "scram_sha256", "scram-sha-512": "scram_sha512"}
	if want, ok := kedaSASL[mech]; !ok || md["sasl"] != want {
		t.Errorf("trigger sasl %q; the scorers use SASL mechanism %q", md["sasl"], mech)
	}
	if cfg["kafka-tls-ca"] == "" || md["tls"] != "enable" {
		t.Errorf("trigger tls %q; the scorers' --kafka-tls-ca %q", md["tls"], cfg["kafka-tls-ca"])
	}
	if trig.AuthenticationRef == nil || (trig.AuthenticationRef.Kind != "" && trig.AuthenticationRef.Kind != "TriggerAuthentication") {
		t.Fatalf("trigger authenticationRef %+v: want a TriggerAuthentication", trig.AuthenticationRef)
	}
	var ta *triggerAuthentication
	for i := range r.triggerAuths {
		if r.triggerAuths[i].Metadata.Name == trig.AuthenticationRef.Name && r.triggerAuths[i].Metadata.Namespace == so.Metadata.Namespace {
			ta = &r.triggerAuths[i]
		}
	}
	if ta == nil {
		t.Fatalf("no TriggerAuthentication %s in %s", trig.AuthenticationRef.Name, so.Metadata.Namespace)
	}
	secrets := map[string]string{} // parameter -> "secret:NAME/KEY"
	for _, s := range ta.Spec.SecretTargetRef {
		secrets[s.Parameter] = "secret:" + s.Name + "/" + s.Key
	}
	if pw := env["RECON_KAFKA_SASL_PASSWORD"]; !strings.HasPrefix(pw, "secret:") || secrets["password"] != pw {
		t.Errorf("TriggerAuthentication password from %q; the scorers' RECON_KAFKA_SASL_PASSWORD from %q", secrets["password"], pw)
	}
	if ca, mounted := cfg["kafka-tls-ca"], mountedSecret(tmpl, c, cfg["kafka-tls-ca"]); mounted == "" || secrets["ca"] != mounted {
		t.Errorf("TriggerAuthentication ca from %q; the scorers read %s from %q", secrets["ca"], ca, mounted)
	}
	found := false
	for _, e := range ta.Spec.Env {
		if e.Parameter == "username" {
			found = true
			if e.ContainerName != c.Name || env[e.Name] == "" || env[e.Name] != cfg["kafka-sasl-username"] {
				t.Errorf("TriggerAuthentication username from %s of container %q (%q); the scorers' --kafka-sasl-username is %q",
					e.Name, e.ContainerName, env[e.Name], cfg["kafka-sasl-username"])
			}
		}
	}
	if !found {
		t.Errorf("TriggerAuthentication gives no username")
	}
}

// mountedSecret returns the Secret key ("secret:NAME/KEY") that container
// c sees at file, or "".
func mountedSecret(tmpl *corev1.PodTemplateSpec, c *corev1.Container, file string) string {
	for _, m := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range tmpl.Spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			key := rel
			for _, it := range v.Secret.Items {
				if path.Clean(it.Path) == rel {
					key = it.Key
				}
			}
			return "secret:" + v.Secret.SecretName + "/" + key
		}
	}
	return ""
}

// aclNeed is an operation on a Kafka resource that recon performs.
type aclNeed struct{ resource, name, op string }

// kafkaNeeds returns what a container does on Kafka, from its
// configuration: --group reads --topic (and commits to the group); every
// other --*-topic, when set, is written to.
func kafkaNeeds(cfg map[string]string) []aclNeed {
	if _, ok := cfg["brokers"]; !ok {
		return nil
	}
	if src, ok := cfg["source"]; ok && src != "kafka" {
		return nil
	}
	var needs []aclNeed
	for flag, v := range cfg {
		switch {
		case v == "":
		case flag == "topic":
			needs = append(needs, aclNeed{"topic", v, "Read"}, aclNeed{"topic", v, "Describe"})
		case flag == "group":
			needs = append(needs, aclNeed{"group", v, "Read"}, aclNeed{"group", v, "Describe"})
		case strings.HasSuffix(flag, "-topic"):
			needs = append(needs, aclNeed{"topic", v, "Write"}, aclNeed{"topic", v, "Describe"})
		}
	}
	return needs
}

// allows reports whether the user's ACLs allow the need.
func (u *kafkaUser) allows(n aclNeed) bool {
	for _, a := range u.Spec.Authorization.ACLs {
		if (a.Type != "" && a.Type != "allow") || (a.Host != "" && a.Host != "*") || a.Resource.Type != n.resource {
			continue
		}
		switch a.Resource.PatternType {
		case "", "literal":
			if a.Resource.Name != n.name && a.Resource.Name != "*" {
				continue
			}
		case "prefix":
			if !strings.HasPrefix(n.name, a.Resource.Name) {
				continue
			}
		default:
			continue
		}
		if slices.Contains(a.Operations, n.op) || slices.Contains(a.Operations, "All") || a.Operation == n.op || a.Operation == "All" {
			return true
		}
	}
	return false
}

// TestKafkaUser checks the Strimzi overlays' KafkaUser: the pods
// authenticate as it, with its mechanism and the Secret the User Operator
// writes, and its ACLs allow what every binary does with the topics and
// groups it is configured with (its defaults from its -h, the ConfigMap
// and its arguments), and writes to every declared topic no binary reads;
// and no ACL is there that none of that needs.
func TestKafkaUser(t *testing.T) {
	for _, dir := range []string{"k8s/overlays/strimzi", "k8s/overlays/keda"} {
		r := render(t, dir)
		if len(r.users) != 1 {
			t.Fatalf("%s: %d KafkaUsers", dir, len(r.users))
		}
		u := &r.users[0]
		if u.Spec.Authentication.Type != "scram-sha-512" || u.Spec.Authorization.Type != "simple" {
			t.Errorf("%s: KafkaUser %s: authentication %q, authorization %q; want scram-sha-512, simple", dir,
				u.Metadata.Name, u.Spec.Authentication.Type, u.Spec.Authorization.Type)
		}
		var needs []aclNeed
		read := map[string]bool{}
		for _, bin := range []string{"/recon/scorer", "/recon/trainer"} {
			_, _, c := r.container(t, bin)
			cfg, env := r.config(t, c), r.env(c)
			if cfg["kafka-sasl-mechanism"] != u.Spec.Authentication.Type || cfg["kafka-sasl-username"] != u.Metadata.Name ||
				env["RECON_KAFKA_SASL_PASSWORD"] != "secret:"+u.Metadata.Name+"/password" {
				t.Errorf("%s: %s authenticates with %q as %q, password %q; want the KafkaUser's %q, %q and its Secret's key password", dir, bin,
					cfg["kafka-sasl-mechanism"], cfg["kafka-sasl-username"], env["RECON_KAFKA_SASL_PASSWORD"], u.Spec.Authentication.Type, u.Metadata.Name)
			}
			n := kafkaNeeds(cfg)
			if len(n) == 0 {
				t.Errorf("%s: %s uses no Kafka topic", dir, bin)
			}
			for _, x := range n {
				if x.op == "Read" && x.resource == "topic" {
					read[x.name] = true
				}
			}
			needs = append(needs, n...)
		}
		for _, kt := range r.topics { // declared, and read by none: an output
			if !read[kt.Metadata.Name] {
				needs = append(needs, aclNeed{"topic", kt.Metadata.Name, "Write"}, aclNeed{"topic", kt.Metadata.Name, "Describe"})
			}
		}
		for _, n := range needs {
			if !u.allows(n) {
				t.Errorf("%s: KafkaUser %s has no ACL for %s on %s %s", dir, u.Metadata.Name, n.op, n.resource, n.name)
			}
		}
		// Each ACL is needed: without it, something recon does is refused.
		acls := u.Spec.Authorization.ACLs
		for i, a := range acls {
			v := *u
			v.Spec.Authorization.ACLs = slices.Delete(slices.Clone(acls), i, i+1)
			if !slices.ContainsFunc(needs, func(n aclNeed) bool { return !v.allows(n) }) {
				t.Errorf("%s: KafkaUser %s: ACL %s %s %v is needed by nothing recon does", dir, u.Metadata.Name,
					a.Resource.Type, a.Resource.Name, a.Operations)
			}
		}
	}
}

// TestGoverningService checks that each StatefulSet's governing Service
// exists, is headless and selects its pods.
func TestGoverningService(t *testing.T) {
	for _, dir := range kustomizations {
		r := render(t, dir)
		for _, s := range r.statefulSets {
			i := slices.IndexFunc(r.services, func(svc corev1.Service) bool { return svc.Name == s.Spec.ServiceName })
			if i < 0 {
				t.Errorf("%s: StatefulSet %s: no Service %q", dir, s.Name, s.Spec.ServiceName)
				continue
			}
			svc := r.services[i]
			if svc.Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("%s: Service %s governs StatefulSet %s but has clusterIP %q; want None (headless)", dir, svc.Name, s.Name, svc.Spec.ClusterIP)
			}
			if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(s.Spec.Template.Labels)) {
				t.Errorf("%s: Service %s selects %v, not the pods of %s", dir, svc.Name, svc.Spec.Selector, s.Name)
			}
		}
		if len(r.statefulSets) == 0 {
			t.Errorf("%s: no StatefulSet", dir)
		}
	}
}

// selects reports whether a NetworkPolicy's pod selector selects pods
// with labels lbls.
func selects(t *testing.T, sel *metav1.LabelSelector, lbls map[string]string) bool {
	t.Helper()
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return s.Matches(labels.Set(lbls))
}

// portAllowed reports whether a rule's ports admit a container port.
func portAllowed(ports []networkingv1.NetworkPolicyPort, p corev1.ContainerPort) bool {
	if len(ports) == 0 {
		return true
	}
	for _, np := range ports {
		if np.Protocol != nil && *np.Protocol != corev1.ProtocolTCP {
			continue
		}
		switch {
		case np.Port == nil:
			return true
		case np.Port.Type == intstr.String && np.Port.StrVal == p.Name && p.Name != "":
			return true
		case np.Port.Type == intstr.Int && (np.Port.IntVal == p.ContainerPort ||
			np.EndPort != nil && np.Port.IntVal <= p.ContainerPort && p.ContainerPort <= *np.EndPort):
			return true
		}
	}
	return false
}

// ingressPeers returns the peers the rendering's NetworkPolicies admit to
// port p of pods labelled lbls; all is true when one rule admits anyone.
func (r *rendered) ingressPeers(t *testing.T, lbls map[string]string, p corev1.ContainerPort) (peers []networkingv1.NetworkPolicyPeer, all bool) {
	for _, np := range r.netpols {
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) || !selects(t, &np.Spec.PodSelector, lbls) {
			continue
		}
		for _, rule := range np.Spec.Ingress {
			if portAllowed(rule.Ports, p) {
				all = all || len(rule.From) == 0
				peers = append(peers, rule.From...)
			}
		}
	}
	return peers, all
}

// TestCoordinatorIngress checks who may reach the coordinator's gRPC port:
// only pods in its namespace that carry more than one of recon's labels,
// the trainers and scorers among them, and not a pod that merely calls
// itself a trainer.
func TestCoordinatorIngress(t *testing.T) {
	for _, dir := range kustomizations {
		r := render(t, dir)
		_, coord, c := r.container(t, "/recon/coordinator")
		i := slices.IndexFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "grpc" })
		if i < 0 {
			t.Fatalf("%s: the coordinator has no grpc port", dir)
		}
		peers, all := r.ingressPeers(t, coord.Labels, c.Ports[i])
		if all {
			t.Errorf("%s: a NetworkPolicy admits anyone to the coordinator's gRPC port", dir)
		}
		if len(peers) == 0 {
			t.Errorf("%s: no NetworkPolicy admits anyone to the coordinator's gRPC port", dir)
		}
		for _, p := range peers {
			if p.NamespaceSelector != nil || p.IPBlock != nil || p.PodSelector == nil {
				t.Errorf("%s: coordinator ingress from %+v: want recon's own pods only", dir, p)
				continue
			}
			if n := len(p.PodSelector.MatchLabels) + len(p.PodSelector.MatchExpressions); n < 2 {
				t.Errorf("%s: coordinator ingress from pods selected by %d label: want more than one", dir, n)
			}
			for _, lbls := range []map[string]string{{"app.kubernetes.io/component": "trainer"}, {"app.kubernetes.io/name": "recon"}} {
				if selects(t, p.PodSelector, lbls) {
					t.Errorf("%s: coordinator ingress admits a pod labelled only %v", dir, lbls)
				}
			}
		}
		for _, bin := range []string{"/recon/trainer", "/recon/scorer"} {
			_, tmpl, _ := r.container(t, bin)
			if !slices.ContainsFunc(peers, func(p networkingv1.NetworkPolicyPeer) bool {
				return p.NamespaceSelector == nil && selects(t, p.PodSelector, tmpl.Labels)
			}) {
				t.Errorf("%s: %s pods (%v) may not reach the coordinator", dir, bin, tmpl.Labels)
			}
		}
	}
}

// TestNetworkPorts checks that the NetworkPolicies admit what the pods
// serve and dial: each metrics port from a namespace selector (the
// monitoring namespaces), and the port of every broker the Kafka clients
// are given.
func TestNetworkPorts(t *testing.T) {
	for _, dir := range kustomizations {
		r := render(t, dir)
		for name, tmpl := range r.workloads {
			for i := range tmpl.Spec.Containers {
				c := &tmpl.Spec.Containers[i]
				for _, p := range c.Ports {
					if p.Name != "metrics" {
						continue
					}
					peers, _ := r.ingressPeers(t, tmpl.Labels, p)
					if !slices.ContainsFunc(peers, func(p networkingv1.NetworkPolicyPeer) bool { return p.NamespaceSelector != nil }) {
						t.Errorf("%s: %s: no NetworkPolicy admits scrapes of port %d from the monitoring namespaces", dir, name, p.ContainerPort)
					}
				}
				cfg := r.config(t, c)
				if kafkaNeeds(cfg) == nil {
					continue
				}
				for _, b := range strings.Split(cfg["brokers"], ",") {
					port := corev1.ContainerPort{ContainerPort: int32(portOf(t, b))}
					if !r.egressAllowed(t, tmpl.Labels, port) {
						t.Errorf("%s: %s may not reach broker %s", dir, name, b)
					}
				}
			}
		}
	}
}

// egressAllowed reports whether the NetworkPolicies let pods labelled
// lbls connect to port p somewhere.
func (r *rendered) egressAllowed(t *testing.T, lbls map[string]string, p corev1.ContainerPort) bool {
	for _, np := range r.netpols {
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || !selects(t, &np.Spec.PodSelector, lbls) {
			continue
		}
		for _, rule := range np.Spec.Egress {
			if portAllowed(rule.Ports, p) {
				return true
			}
		}
	}
	return false
}

// TestProbesServed runs the scorer and the trainer as their probes expect
// and asks them: liveness says 200 while the process runs, readiness says
// 503 while there is no coordinator and no Kafka (no model, no training
// session), so it reflects the process's state rather than its existence.
func TestProbesServed(t *testing.T) {
	r := render(t, "k8s/base")
	dir := t.TempDir()
	for bin, args := range map[string][]string{
		"scorer":  {"run", "--brokers=127.0.0.1:1", "--coordinator=127.0.0.1:1", "--cache=" + filepath.Join(dir, "scorer.db")},
		"trainer": {"run", "--source=kafka", "--format=json-object", "--features=a,b,c", "--brokers=127.0.0.1:1", "--coordinator=127.0.0.1:1"},
	} {
		t.Run(bin, func(t *testing.T) {
			_, _, c := r.container(t, "/recon/"+bin)
			if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil {
				t.Fatalf("want HTTP liveness and readiness probes")
			}
			addr := freeAddrs(t, 1)[0]
			cmd := exec.CommandContext(t.Context(), filepath.Join(binDir, bin), append(args, "--metrics-listen="+addr)...)
			cmd.Env = slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "RECON_") })
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				if err := <-done; t.Failed() {
					t.Logf("%s exited: %v", bin, err)
				}
			})
			get := func(p string) (int, string) {
				resp, err := http.Get("http://" + addr + p)
				if err != nil {
					return 0, err.Error()
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, strings.TrimSpace(string(b))
			}
			live := c.LivenessProbe.HTTPGet.Path
			for deadline := time.Now().Add(30 * time.Second); ; {
				if code, _ := get(live); code == http.StatusOK {
					break
				}
				select {
				case err := <-done:
					done <- err
					t.Fatalf("%s exited (%v) before %s answered 200:\n%s", bin, err, live, out.String())
				case <-time.After(50 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s never answered 200 on %s:\n%s", bin, live, out.String())
				}
			}
			ready := c.ReadinessProbe.HTTPGet.Path
			if code, body := get(ready); code != http.StatusServiceUnavailable {
				t.Errorf("%s %s with no coordinator and no Kafka: %d %q; want 503 and the reason", bin, ready, code, body)
			}
		})
	}
}
