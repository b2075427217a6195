package check

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/kv"
	"sigs.k8s.io/kustomize/api/pkg/loader"
	"sigs.k8s.io/kustomize/api/provider"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kinds are the objects our manifests may contain, each decoded into its k8s.io/api type.
// Anything else is an error: a kind nobody checks is a kind nobody reviewed.
var kinds = map[string]func() any{
	"v1/Namespace":                           func() any { return &corev1.Namespace{} },
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                              func() any { return &corev1.Secret{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                    func() any { return &appsv1.StatefulSet{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"networking.k8s.io/v1/Ingress":           func() any { return &networkingv1.Ingress{} },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return &networkingv1.NetworkPolicy{} },
	"batch/v1/CronJob":                       func() any { return &batchv1.CronJob{} },
	"cert-manager.io/v1/Certificate":         func() any { return &Certificate{} },
	"cert-manager.io/v1/Issuer":              func() any { return &Issuer{} },
}

// Object is one object of a built overlay, decoded strictly.
type Object struct {
	Kind, Name string
	Value      any // *appsv1.Deployment, *corev1.Service, ...
}

var kustomizeMu sync.Mutex

// Build builds the kustomization at dir on fs as kubectl apply -k does, and decodes every
// object into its k8s.io/api type, failing on fields the type does not have.
func Build(fs filesys.FileSystem, dir string) ([]Object, error) {
	// kustomize keeps its OpenAPI schema in package globals that it initialises without a
	// lock: two builds at once race (seen under -race), so builds take turns.
	kustomizeMu.Lock()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, dir)
	kustomizeMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var objs []Object
	for _, r := range m.Resources() {
		key := r.GetApiVersion() + "/" + r.GetKind()
		newObj, ok := kinds[key]
		if !ok {
			return nil, fmt.Errorf("%s %s: no check knows this kind", key, r.GetName())
		}
		data, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		v := newObj()
		if err := yaml.UnmarshalStrict(data, v); err != nil {
			return nil, fmt.Errorf("%s %s: %w", r.GetKind(), r.GetName(), err)
		}
		objs = append(objs, Object{Kind: r.GetKind(), Name: r.GetName(), Value: v})
	}
	return objs, nil
}

// ReadEnvFile reads an env file as kustomize's configMapGenerator and secretGenerator do,
// with kustomize's own reader (kv, over a file loader rooted at /): comments and blank lines
// skipped, a bare KEY taken from the environment, invalid names refused.
func ReadEnvFile(fs filesys.FileSystem, path string) (map[string]string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	kvl := kv.NewLoader(loader.NewFileLoaderAtRoot(fs), provider.NewDefaultDepProvider().GetFieldValidator())
	pairs, err := kvl.Load(types.KvPairSources{EnvSources: []string{abs}})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	env := make(map[string]string, len(pairs))
	for _, p := range pairs {
		env[p.Key] = p.Value
	}
	return env, nil
}

// ExternalSecrets reads the templates of the Secrets an overlay expects to find in the
// cluster (created by hand from dir/secrets/NAME.env.example): name → keys.
func ExternalSecrets(fs filesys.FileSystem, dir string) (map[string][]string, error) {
	paths, err := fs.Glob(filepath.Join(dir, "secrets", "*.env.example"))
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, p := range paths {
		env, err := ReadEnvFile(fs, p)
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(filepath.Base(p), ".env.example")
		out[name] = slices.Sorted(maps.Keys(env))
	}
	return out, nil
}

// Cluster is a built overlay as the checks see it.
type Cluster struct {
	Namespace       string
	Objects         []Object
	Namespaces      []*corev1.Namespace
	ConfigMaps      map[string]*corev1.ConfigMap
	Secrets         map[string]map[string]string // name → key → value
	External        map[string][]string          // Secrets created out of band: name → keys
	Workloads       []*Workload
	Services        []*corev1.Service
	PDBs            []*policyv1.PodDisruptionBudget
	HPAs            []*autoscalingv2.HorizontalPodAutoscaler
	Ingresses       []*networkingv1.Ingress
	NetworkPolicies []*networkingv1.NetworkPolicy
	Certificates    []*Certificate
	Issuers         []*Issuer
	CronJobs        []*batchv1.CronJob
	// jobPods are the CronJobs' pod templates, as workloads of kind CronJob: every rule on
	// containers (resources, security context, references, images) holds them too.
	jobPods []*Workload
}

// Workload is a Deployment or a StatefulSet: what runs pods.
type Workload struct {
	Kind, Name string
	Selector   *metav1.LabelSelector
	Template   *corev1.PodTemplateSpec
	// Replicas is the spec's count; for a Deployment an HPA scales, its minReplicas.
	Replicas    int32
	StatefulSet *appsv1.StatefulSet // nil for a Deployment
}

// NewCluster indexes objs. external are the Secrets expected to exist already.
func NewCluster(objs []Object, external map[string][]string) (*Cluster, error) {
	c := &Cluster{Objects: objs, ConfigMaps: map[string]*corev1.ConfigMap{},
		Secrets: map[string]map[string]string{}, External: external}
	namespaces := map[string]bool{}
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *corev1.Namespace:
			c.Namespaces = append(c.Namespaces, v)
			continue
		case *corev1.ConfigMap:
			c.ConfigMaps[v.Name] = v
		case *corev1.Secret:
			data := map[string]string{}
			for k, b := range v.Data {
				data[k] = string(b)
			}
			for k, s := range v.StringData {
				data[k] = s
			}
			c.Secrets[v.Name] = data
		case *corev1.Service:
			c.Services = append(c.Services, v)
		case *appsv1.Deployment:
			w := &Workload{Kind: o.Kind, Name: v.Name, Selector: v.Spec.Selector, Template: &v.Spec.Template, Replicas: 1}
			if v.Spec.Replicas != nil {
				w.Replicas = *v.Spec.Replicas
			}
			c.Workloads = append(c.Workloads, w)
		case *appsv1.StatefulSet:
			w := &Workload{Kind: o.Kind, Name: v.Name, Selector: v.Spec.Selector, Template: &v.Spec.Template, Replicas: 1, StatefulSet: v}
			if v.Spec.Replicas != nil {
				w.Replicas = *v.Spec.Replicas
			}
			c.Workloads = append(c.Workloads, w)
		case *policyv1.PodDisruptionBudget:
			c.PDBs = append(c.PDBs, v)
		case *autoscalingv2.HorizontalPodAutoscaler:
			c.HPAs = append(c.HPAs, v)
		case *networkingv1.Ingress:
			c.Ingresses = append(c.Ingresses, v)
		case *networkingv1.NetworkPolicy:
			c.NetworkPolicies = append(c.NetworkPolicies, v)
		case *batchv1.CronJob:
			c.CronJobs = append(c.CronJobs, v)
			c.jobPods = append(c.jobPods, &Workload{Kind: o.Kind, Name: v.Name, Template: &v.Spec.JobTemplate.Spec.Template})
		case *Certificate:
			c.Certificates = append(c.Certificates, v)
		case *Issuer:
			c.Issuers = append(c.Issuers, v)
		}
		namespaces[objectNamespace(o)] = true
	}
	if len(namespaces) != 1 {
		return nil, fmt.Errorf("objects in %d namespaces %v, want one (the overlay's namespace:)", len(namespaces), slices.Sorted(maps.Keys(namespaces)))
	}
	for ns := range namespaces {
		c.Namespace = ns
	}
	for _, h := range c.HPAs {
		if w := c.Workload(h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name); w != nil && h.Spec.MinReplicas != nil {
			w.Replicas = *h.Spec.MinReplicas
		}
	}
	return c, nil
}

func objectNamespace(o Object) string {
	if m, ok := o.Value.(metav1.ObjectMetaAccessor); ok {
		return m.GetObjectMeta().GetNamespace()
	}
	return ""
}

// Workload returns the workload of that kind and name, or nil.
func (c *Cluster) Workload(kind, name string) *Workload {
	for _, w := range c.Workloads {
		if w.Kind == kind && w.Name == name {
			return w
		}
	}
	return nil
}

// Selecting returns the workloads whose pods sel selects (none for a nil selector).
func (c *Cluster) Selecting(sel *metav1.LabelSelector) []*Workload {
	if sel == nil {
		return nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return nil
	}
	var out []*Workload
	for _, w := range c.Workloads {
		if s.Matches(labels.Set(w.Template.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

// SelectingMap returns the workloads whose pods a Service-style selector selects.
func (c *Cluster) SelectingMap(sel map[string]string) []*Workload {
	if len(sel) == 0 {
		return nil
	}
	return c.Selecting(&metav1.LabelSelector{MatchLabels: sel})
}

// Env is a container's environment as the process sees it, and where each name came from.
type Env struct {
	Values map[string]string
	// Unresolved lists references that name a missing ConfigMap, Secret or key.
	Unresolved []string
}

// standInSecret stands in for key of a Secret created out of band, as the scripts make one:
// 32 random-looking bytes in hex (a NATS password after a letter, as users.conf wants), each
// key its own, so that a service that refuses one secret reused for another (SITE_TOKENS and
// INTAKE_TOKENS) is checked as deployed.
func standInSecret(key string) string {
	sum := sha256.Sum256([]byte("stand-in " + key))
	if key == "NATS_PASSWORD" {
		return "p" + hex.EncodeToString(sum[:])
	}
	return hex.EncodeToString(sum[:])
}

// ContainerEnv resolves a container's envFrom and env as the kubelet would.
func (c *Cluster) ContainerEnv(ctr *corev1.Container) Env {
	e := Env{Values: map[string]string{}}
	missing := func(format string, args ...any) { e.Unresolved = append(e.Unresolved, fmt.Sprintf(format, args...)) }
	for _, from := range ctr.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := c.ConfigMaps[from.ConfigMapRef.Name]
			if !ok {
				if !isTrue(from.ConfigMapRef.Optional) {
					missing("ConfigMap %s", from.ConfigMapRef.Name)
				}
				continue
			}
			for k, v := range cm.Data {
				e.Values[from.Prefix+k] = v
			}
		case from.SecretRef != nil:
			keys, ok := c.secretKeys(from.SecretRef.Name)
			if !ok {
				if !isTrue(from.SecretRef.Optional) {
					missing("Secret %s", from.SecretRef.Name)
				}
				continue
			}
			for k, v := range keys {
				e.Values[from.Prefix+k] = v
			}
		}
	}
	for _, ev := range ctr.Env {
		switch src := ev.ValueFrom; {
		case src == nil:
			e.Values[ev.Name] = expandEnv(ev.Value, e.Values)
		case src.ConfigMapKeyRef != nil:
			ref := src.ConfigMapKeyRef
			var v string
			cm, ok := c.ConfigMaps[ref.Name]
			if ok {
				v, ok = cm.Data[ref.Key]
			}
			if !ok {
				if !isTrue(ref.Optional) {
					missing("ConfigMap %s key %s (for %s)", ref.Name, ref.Key, ev.Name)
				}
				continue
			}
			e.Values[ev.Name] = v
		case src.SecretKeyRef != nil:
			ref := src.SecretKeyRef
			keys, _ := c.secretKeys(ref.Name)
			v, ok := keys[ref.Key]
			if !ok {
				if !isTrue(ref.Optional) {
					missing("Secret %s key %s (for %s)", ref.Name, ref.Key, ev.Name)
				}
				continue
			}
			e.Values[ev.Name] = v
		default: // fieldRef, resourceFieldRef: set by the kubelet
			e.Values[ev.Name] = "kubelet-provided"
		}
	}
	return e
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandEnv replaces $(NAME) with the value of a variable defined before it, as the kubelet
// does; a reference to an undefined one stays as written.
func expandEnv(v string, defined map[string]string) string {
	return envRef.ReplaceAllStringFunc(v, func(ref string) string {
		if val, ok := defined[ref[2:len(ref)-1]]; ok {
			return val
		}
		return ref
	})
}

// secretKeys returns a Secret's keys and values, from the overlay or, for one created out
// of band, its template's keys with a stand-in value.
func (c *Cluster) secretKeys(name string) (map[string]string, bool) {
	if s, ok := c.Secrets[name]; ok {
		return s, true
	}
	keys, ok := c.External[name]
	if crt := c.certificateFor(name); crt != nil {
		keys, ok = certificateKeys, true
	}
	if !ok {
		return nil, false
	}
	out := map[string]string{}
	for _, k := range keys {
		out[k] = standInSecret(k)
	}
	return out, true
}

func isTrue(b *bool) bool { return b != nil && *b }
