package check

import (
	batchv1 "k8s.io/api/batch/v1"

	"github.com/demobank/yacredits/pkg/provision"

	"maps"

	"github.com/demobank/yacredits/pkg/bus"

	"fmt"
	"net"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Rule is one policy over a built overlay; Check returns every violation.
type Rule struct {
	Name  string
	Check func(*Cluster) []error
}

// Rules are the policies every overlay meets.
var Rules = []Rule{
	{"probes", checkProbes},
	{"resources", checkResources},
	{"security context", checkSecurityContext},
	{"selectors", checkSelectors},
	{"config references", checkReferences},
	{"service variables", checkServiceVariables},
	{"plan settings", checkPlanSettings},
	{"disruption budgets", checkPDBs},
	{"graceful termination", checkTermination},
	{"nats cluster", checkNATS},
	{"exposure", checkExposure},
	{"pinned images", checkImages},
	{"network policies", checkNetworkPolicies},
	{"jobs", checkJobs},
}

// checkJobs: a CronJob's runs end (a deadline, a bounded number of retries), never overlap,
// and carry no service account token. Its pods' containers are held to the rules every
// workload's are (resources, security context, references, pinned images).
func checkJobs(c *Cluster) []error {
	var f finder
	for _, cj := range c.CronJobs {
		where := "CronJob " + cj.Name
		js := cj.Spec.JobTemplate.Spec
		if cj.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
			f.add("%s: runs may overlap (concurrencyPolicy %q, want Forbid)", where, cj.Spec.ConcurrencyPolicy)
		}
		if js.ActiveDeadlineSeconds == nil || js.BackoffLimit == nil {
			f.add("%s: a run has no deadline or no bound on its retries", where)
		}
		if t := js.Template.Spec.AutomountServiceAccountToken; t == nil || *t {
			f.add("%s: mounts a service account token", where)
		}
	}
	return f.errs
}

// RuleByName returns the rule called name.
func RuleByName(name string) (Rule, bool) {
	i := slices.IndexFunc(Rules, func(r Rule) bool { return r.Name == name })
	if i < 0 {
		return Rule{}, false
	}
	return Rules[i], true
}

// NATSName is the StatefulSet (and app.kubernetes.io/name) of the NATS cluster.
const NATSName = "nats"

// NATSServers is how many servers the JetStream cluster has.
const NATSServers = 3

type finder struct{ errs []error }

func (f *finder) add(format string, args ...any) {
	f.errs = append(f.errs, fmt.Errorf(format, args...))
}

// containers yields every container of every workload and of every CronJob's pods, init
// containers included.
func (c *Cluster) containers(yield func(*Workload, *corev1.Container) bool) {
	for _, w := range slices.Concat(c.Workloads, c.jobPods) {
		spec := &w.Template.Spec
		for i := range spec.InitContainers {
			if !yield(w, &spec.InitContainers[i]) {
				return
			}
		}
		for i := range spec.Containers {
			if !yield(w, &spec.Containers[i]) {
				return
			}
		}
	}
}

func checkProbes(c *Cluster) []error {
	var f finder
	for _, w := range c.Workloads {
		for i := range w.Template.Spec.Containers {
			ctr := &w.Template.Spec.Containers[i]
			where := fmt.Sprintf("%s %s container %s", w.Kind, w.Name, ctr.Name)
			for _, p := range []struct {
				name  string
				probe *corev1.Probe
			}{{"readinessProbe", ctr.ReadinessProbe}, {"livenessProbe", ctr.LivenessProbe}, {"startupProbe", ctr.StartupProbe}} {
				if p.probe == nil {
					if p.name != "startupProbe" {
						f.add("%s: no %s", where, p.name)
					}
					continue
				}
				if g := p.probe.HTTPGet; g != nil && !hasPort(ctr, g.Port) {
					f.add("%s: %s probes port %s, which the container does not declare", where, p.name, g.Port.String())
				}
			}
		}
	}
	return f.errs
}

func hasPort(ctr *corev1.Container, p intstr.IntOrString) bool {
	return slices.ContainsFunc(ctr.Ports, func(cp corev1.ContainerPort) bool {
		if p.Type == intstr.String {
			return cp.Name == p.StrVal
		}
		return cp.ContainerPort == p.IntVal
	})
}

func checkResources(c *Cluster) []error {
	var f finder
	for w, ctr := range c.containers {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			req, hasReq := ctr.Resources.Requests[r]
			lim, hasLim := ctr.Resources.Limits[r]
			switch {
			case !hasReq || !hasLim:
				f.add("%s %s container %s: %s needs a request and a limit", w.Kind, w.Name, ctr.Name, r)
			case req.Cmp(lim) > 0:
				f.add("%s %s container %s: %s request %s above its limit %s", w.Kind, w.Name, ctr.Name, r, req.String(), lim.String())
			}
		}
	}
	return f.errs
}

func checkSecurityContext(c *Cluster) []error {
	var f finder
	for w, ctr := range c.containers {
		pod := w.Template.Spec.SecurityContext
		if pod == nil {
			pod = &corev1.PodSecurityContext{}
		}
		sc := ctr.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		where := fmt.Sprintf("%s %s container %s", w.Kind, w.Name, ctr.Name)
		nonRoot := sc.RunAsNonRoot
		if nonRoot == nil {
			nonRoot = pod.RunAsNonRoot
		}
		if !isTrue(nonRoot) {
			f.add("%s: runAsNonRoot is not true", where)
		}
		if uid := sc.RunAsUser; (uid != nil && *uid == 0) || (uid == nil && pod.RunAsUser != nil && *pod.RunAsUser == 0) {
			f.add("%s: runs as user 0", where)
		}
		if !isTrue(sc.ReadOnlyRootFilesystem) {
			f.add("%s: readOnlyRootFilesystem is not true", where)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			f.add("%s: allowPrivilegeEscalation is not false", where)
		}
		if isTrue(sc.Privileged) {
			f.add("%s: privileged", where)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			f.add("%s: capabilities must drop ALL and add none", where)
		}
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = pod.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			f.add("%s: seccompProfile is not RuntimeDefault", where)
		}
	}
	return f.errs
}

func checkSelectors(c *Cluster) []error {
	var f finder
	for _, w := range c.Workloads {
		if got := c.Selecting(w.Selector); !slices.Contains(got, w) {
			f.add("%s %s: its selector does not match its own pod labels", w.Kind, w.Name)
		}
		if ss := w.StatefulSet; ss != nil {
			svc := c.service(ss.Spec.ServiceName)
			if svc == nil || !slices.Contains(c.SelectingMap(svc.Spec.Selector), w) {
				f.add("StatefulSet %s: serviceName %q is not a Service selecting its pods", w.Name, ss.Spec.ServiceName)
			}
		}
	}
	for _, s := range c.Services {
		if len(c.SelectingMap(s.Spec.Selector)) == 0 {
			f.add("Service %s: selects no pods", s.Name)
		}
	}
	for _, p := range c.PDBs {
		if n := len(c.Selecting(p.Spec.Selector)); n != 1 {
			f.add("PodDisruptionBudget %s: selects the pods of %d workloads, want 1", p.Name, n)
		}
	}
	for _, h := range c.HPAs {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || c.Workload(ref.Kind, ref.Name) == nil {
			f.add("HorizontalPodAutoscaler %s: targets %s %s, which is not a Deployment here", h.Name, ref.Kind, ref.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			f.add("HorizontalPodAutoscaler %s: want 1 <= minReplicas <= maxReplicas", h.Name)
		}
	}
	for _, ing := range c.Ingresses {
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				b := p.Backend.Service
				if b == nil {
					f.add("Ingress %s: path %s has no Service backend", ing.Name, p.Path)
					continue
				}
				svc := c.service(b.Name)
				if svc == nil || !slices.ContainsFunc(svc.Spec.Ports, func(sp corev1.ServicePort) bool {
					return (b.Port.Name != "" && sp.Name == b.Port.Name) || (b.Port.Number != 0 && sp.Port == b.Port.Number)
				}) {
					f.add("Ingress %s: path %s goes to Service %s port %v, which does not exist", ing.Name, p.Path, b.Name, b.Port)
				}
			}
		}
	}
	for _, np := range c.NetworkPolicies {
		if len(np.Spec.PodSelector.MatchLabels)+len(np.Spec.PodSelector.MatchExpressions) > 0 && len(c.Selecting(&np.Spec.PodSelector)) == 0 {
			f.add("NetworkPolicy %s: selects no pods", np.Name)
		}
		for _, peer := range policyPeers(np) {
			if peer.PodSelector != nil && peer.NamespaceSelector == nil && len(c.Selecting(peer.PodSelector)) == 0 {
				f.add("NetworkPolicy %s: a rule names pods %v that do not exist", np.Name, peer.PodSelector)
			}
		}
	}
	return f.errs
}

func (c *Cluster) service(name string) *corev1.Service {
	for _, s := range c.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func checkReferences(c *Cluster) []error {
	var f finder
	for w, ctr := range c.containers {
		for _, m := range c.ContainerEnv(ctr).Unresolved {
			f.add("%s %s container %s: refers to %s, which does not exist", w.Kind, w.Name, ctr.Name, m)
		}
	}
	for _, w := range c.Workloads {
		for _, v := range w.Template.Spec.Volumes {
			switch {
			case v.ConfigMap != nil:
				cm, ok := c.ConfigMaps[v.ConfigMap.Name]
				if !ok && !isTrue(v.ConfigMap.Optional) {
					f.add("%s %s volume %s: ConfigMap %s does not exist", w.Kind, w.Name, v.Name, v.ConfigMap.Name)
				}
				for _, it := range v.ConfigMap.Items {
					if _, has := cm.Data[it.Key]; ok && !has {
						f.add("%s %s volume %s: ConfigMap %s has no key %s", w.Kind, w.Name, v.Name, v.ConfigMap.Name, it.Key)
					}
				}
			case v.Secret != nil:
				if _, ok := c.secretKeys(v.Secret.SecretName); !ok && !isTrue(v.Secret.Optional) {
					f.add("%s %s volume %s: Secret %s does not exist", w.Kind, w.Name, v.Name, v.Secret.SecretName)
				}
			}
		}
	}
	// A Secret expected from outside that nothing uses is a stale template.
	for name, keys := range c.External {
		for _, k := range keys {
			if !c.secretKeyUsed(name, k) {
				f.add("Secret %s (created out of band) key %s: nothing uses it", name, k)
			}
		}
	}
	return f.errs
}

func (c *Cluster) secretKeyUsed(name, key string) bool {
	for _, w := range c.Workloads {
		for _, v := range w.Template.Spec.Volumes {
			if v.Secret == nil || v.Secret.SecretName != name {
				continue
			}
			if len(v.Secret.Items) == 0 || slices.ContainsFunc(v.Secret.Items, func(it corev1.KeyToPath) bool { return it.Key == key }) {
				return true
			}
		}
	}
	for _, ctr := range c.containers {
		for _, from := range ctr.EnvFrom {
			if from.SecretRef != nil && from.SecretRef.Name == name {
				return true
			}
		}
		for _, ev := range ctr.Env {
			if r := ev.ValueFrom; r != nil && r.SecretKeyRef != nil && r.SecretKeyRef.Name == name && r.SecretKeyRef.Key == key {
				return true
			}
		}
	}
	return false
}

// ServiceContainer is a container that runs one of our services.
type ServiceContainer struct {
	Workload  *Workload
	Container *corev1.Container
	Service   Service
}

// ServiceContainers returns the containers running our services: named like the service
// and running its image.
func (c *Cluster) ServiceContainers() []ServiceContainer {
	var out []ServiceContainer
	for w, ctr := range c.containers {
		if svc, ok := ServiceByName(ctr.Name); ok && strings.Contains(ctr.Image, "/"+svc.Name) {
			out = append(out, ServiceContainer{w, ctr, svc})
		}
	}
	return out
}

func checkServiceVariables(c *Cluster) []error {
	var f finder
	seen := map[string]bool{}
	for _, sc := range c.ServiceContainers() {
		w, ctr, svc := sc.Workload, sc.Container, sc.Service
		seen[svc.Name] = true
		env, err := c.ServiceEnv(sc)
		if err != nil {
			f.add("%s %s container %s: %v", w.Kind, w.Name, ctr.Name, err)
		}
		if unread := svc.UnreadVars(env); len(unread) > 0 {
			f.add("%s %s container %s: given variables %s does not read: %s", w.Kind, w.Name, ctr.Name, svc.Name, strings.Join(unread, ", "))
		}
		if _, err := svc.LoadEnv(env); err != nil {
			f.add("%s %s container %s: %v", w.Kind, w.Name, ctr.Name, err)
		}
	}
	for _, svc := range Services {
		if !seen[svc.Name] {
			f.add("no container runs %s (a container named %s with its image)", svc.Name, svc.Name)
		}
	}
	return f.errs
}

// checkPlanSettings: every service reads the settings of the provisioning plan as the
// provisioner does.
func checkPlanSettings(c *Cluster) []error {
	var f finder
	loaded := map[string][]provision.Settings{}
	for _, sc := range c.ServiceContainers() {
		env, err := c.ServiceEnv(sc)
		if err != nil {
			continue // checkServiceVariables says so
		}
		if st, err := sc.Service.LoadEnv(env); err == nil {
			loaded[sc.Service.Name] = append(loaded[sc.Service.Name], st.Plan)
		}
	}
	provs := loaded["provision"]
	if len(provs) == 0 {
		return []error{fmt.Errorf("no provisioner whose settings load: nothing to compare the services' with")}
	}
	for _, name := range slices.Sorted(maps.Keys(loaded)) {
		for _, st := range loaded[name] {
			for _, d := range PlanDisagreements(provs[0], name, st) {
				f.add("%s", d)
			}
		}
	}
	return f.errs
}

func checkPDBs(c *Cluster) []error {
	var f finder
	for _, w := range c.Workloads {
		var budgets []string
		for _, p := range c.PDBs {
			if !slices.Contains(c.Selecting(p.Spec.Selector), w) {
				continue
			}
			budgets = append(budgets, p.Name)
			switch {
			case p.Spec.MinAvailable != nil && p.Spec.MaxUnavailable != nil:
				f.add("PodDisruptionBudget %s: both minAvailable and maxUnavailable", p.Name)
			case p.Spec.MinAvailable != nil:
				minAvail, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MinAvailable, int(w.Replicas), true)
				if err != nil || minAvail >= int(w.Replicas) {
					f.add("PodDisruptionBudget %s: minAvailable %s of %d replicas blocks every eviction", p.Name, p.Spec.MinAvailable.String(), w.Replicas)
				}
			case p.Spec.MaxUnavailable != nil:
				maxUnavail, err := intstr.GetScaledValueFromIntOrPercent(p.Spec.MaxUnavailable, int(w.Replicas), false)
				if err != nil || maxUnavail < 1 {
					f.add("PodDisruptionBudget %s: maxUnavailable %s of %d replicas blocks every eviction", p.Name, p.Spec.MaxUnavailable.String(), w.Replicas)
				}
				if w.Name == NATSName && maxUnavail > NATSServers/2 {
					f.add("PodDisruptionBudget %s: maxUnavailable %d would break the JetStream quorum", p.Name, maxUnavail)
				}
			default:
				f.add("PodDisruptionBudget %s: neither minAvailable nor maxUnavailable", p.Name)
			}
		}
		if len(budgets) != 1 {
			f.add("%s %s: %d PodDisruptionBudgets %v, want 1", w.Kind, w.Name, len(budgets), budgets)
		}
	}
	return f.errs
}

// checkTermination: each pod gets longer to stop than the work it must let finish.
func checkTermination(c *Cluster) []error {
	var f finder
	var gateway *Settings
	for _, sc := range c.ServiceContainers() {
		if sc.Service.Name == "gateway" {
			if st, err := sc.Service.LoadEnv(c.serviceEnvOrPlain(sc)); err == nil {
				gateway = &st
			}
		}
	}
	if gateway == nil {
		return []error{fmt.Errorf("no gateway whose settings load: cannot tell how long a search may take")}
	}
	for _, sc := range c.ServiceContainers() {
		w, ctr, svc := sc.Workload, sc.Container, sc.Service
		grace := 30 * time.Second // the Kubernetes default
		if g := w.Template.Spec.TerminationGracePeriodSeconds; g != nil {
			grace = time.Duration(*g) * time.Second
		}
		need := gateway.Deadline // a consumer drains messages of searches that live this long
		switch svc.Name {
		case "gateway":
			need = gateway.ShutdownTimeout
		case "provision":
			// One call of a pass; a pass stopped midway is finished by the next.
			need = bus.DeclareTimeout
		}
		if l := ctr.Lifecycle; l != nil && l.PreStop != nil && l.PreStop.Sleep != nil {
			need += time.Duration(l.PreStop.Sleep.Seconds) * time.Second
		}
		if grace <= need {
			f.add("%s %s: terminationGracePeriodSeconds %s is not longer than the work it must let finish (%s)", w.Kind, w.Name, grace, need)
		}
	}
	return f.errs
}

// NATSEnv is the environment the NATS container's configuration is read with: its env
// resolved as the kubelet would, with the pod's name for POD_NAME.
func (c *Cluster) natsEnv(w *Workload, ctr *corev1.Container) map[string]string {
	env := c.ContainerEnv(ctr).Values
	if _, ok := env["POD_NAME"]; ok {
		env["POD_NAME"] = w.Name + "-0"
	}
	return env
}

func checkNATS(c *Cluster) []error {
	var f finder
	w := c.Workload("StatefulSet", NATSName)
	if w == nil {
		return []error{fmt.Errorf("no StatefulSet %s", NATSName)}
	}
	ss := w.StatefulSet
	if w.Replicas != NATSServers {
		f.add("StatefulSet nats: %d replicas, want %d", w.Replicas, NATSServers)
	}
	headless := c.service(ss.Spec.ServiceName)
	if headless == nil || headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		f.add("StatefulSet nats: serviceName %q must be a headless Service (clusterIP: None) publishing not-ready addresses", ss.Spec.ServiceName)
	}
	ctrs := w.Template.Spec.Containers
	i := slices.IndexFunc(ctrs, func(c corev1.Container) bool { return c.Name == NATSName })
	if i < 0 {
		return append(f.errs, fmt.Errorf("StatefulSet nats: no container named nats"))
	}
	ctr := &ctrs[i]
	if err := CheckNATSImage(ctr.Image); err != nil {
		f.add("StatefulSet nats: %v", err)
	}

	// The configuration, read by the server's own parser from the mounted ConfigMap.
	args := append(slices.Clone(ctr.Command), ctr.Args...)
	ai := slices.IndexFunc(args, func(a string) bool { return a == "--config" || a == "-c" })
	if ai < 0 || ai+1 >= len(args) {
		return append(f.errs, fmt.Errorf("StatefulSet nats: not started with --config"))
	}
	confPath := args[ai+1]
	text, ok := c.mountedFile(w, ctr, confPath)
	if !ok {
		return append(f.errs, fmt.Errorf("StatefulSet nats: %s is not a key of a mounted ConfigMap", confPath))
	}
	var certSecrets []string
	opts, err := NATSConfig(text, c.natsEnv(w, ctr), func(name string) (string, bool) {
		return c.mountedFile(w, ctr, path.Join(path.Dir(confPath), name))
	}, func(file string) (string, error) {
		secret, key, ok := c.mountedSecret(w, ctr, file)
		if !ok {
			return "", fmt.Errorf("TLS file %s is not a key of a Secret mounted in the container", file)
		}
		certSecrets = append(certSecrets, secret)
		return standInFile(key)
	})
	if err != nil {
		return append(f.errs, fmt.Errorf("StatefulSet nats: %s: %w", confPath, err))
	}
	f.errs = append(f.errs, c.checkNATSTLS(ss, opts, certSecrets)...)
	if !opts.JetStream || !opts.SyncAlways {
		f.add("StatefulSet nats: want JetStream with sync_interval: always")
	}
	if err := CheckNATSMemory(opts); err != nil {
		f.add("StatefulSet nats: %s: %v", confPath, err)
	} else if lim, ok := ctr.Resources.Limits[corev1.ResourceMemory]; ok && lim.Value() < opts.JetStreamMaxMemory+256<<20 {
		f.add("StatefulSet nats: memory limit %s leaves less than 256 MiB above max_memory_store (%d MiB)", lim.String(), opts.JetStreamMaxMemory>>20)
	}
	if !c.onClaim(w, ctr, opts.StoreDir) {
		f.add("StatefulSet nats: the JetStream store %s is not on a volumeClaimTemplate", opts.StoreDir)
	}
	if st, ok := c.provisionerPlan(); ok { // checkPlanSettings says when there is none
		if err := CheckNATSFileStore(opts, st, c.claimSize(w, ctr, opts.StoreDir)); err != nil {
			f.add("StatefulSet nats: %s: %v", confPath, err)
		}
	}
	var routes []string
	for _, r := range opts.Routes {
		routes = append(routes, r.Host)
	}
	var want []string
	for i := range NATSServers {
		want = append(want, net.JoinHostPort(fmt.Sprintf("%s-%d.%s", ss.Name, i, ss.Spec.ServiceName), fmt.Sprint(opts.Cluster.Port)))
	}
	if slices.Sort(routes); !slices.Equal(routes, want) {
		f.add("StatefulSet nats: cluster routes %v, want %v", routes, want)
	}
	// A server joins the cluster only with the route password.
	if opts.Cluster.Username == "" || opts.Cluster.Password == "" {
		f.add("StatefulSet nats: cluster routes need no credentials (cluster.authorization): any server could join")
	}
	for _, r := range opts.Routes {
		if r.User == nil || r.User.Username() != opts.Cluster.Username {
			f.add("StatefulSet nats: route %s does not log in as the cluster's route user", r.Host)
		}
	}
	errs := checkNATSUsers(opts)
	f.errs = append(f.errs, errs...)
	for _, sc := range c.ServiceContainers() {
		if user := c.ContainerEnv(sc.Container).Values["NATS_USER"]; user != sc.Service.Name {
			f.add("%s: NATS_USER %q, want its own user %q", sc.Service.Name, user, sc.Service.Name)
		}
	}
	// Lame-duck mode before termination, and time for it.
	pre := ctr.Lifecycle
	if pre == nil || pre.PreStop == nil || pre.PreStop.Exec == nil ||
		!slices.ContainsFunc(pre.PreStop.Exec.Command, func(a string) bool { return strings.Contains(a, "ldm") }) {
		f.add("StatefulSet nats: no preStop hook signalling lame-duck mode (nats-server --signal ldm=PIDFILE)")
	} else if opts.PidFile == "" || !slices.ContainsFunc(pre.PreStop.Exec.Command, func(a string) bool { return strings.HasSuffix(a, "="+opts.PidFile) }) {
		f.add("StatefulSet nats: the preStop hook does not signal the pid_file %q", opts.PidFile)
	} else if !c.onVolume(w, ctr, opts.PidFile) {
		f.add("StatefulSet nats: pid_file %s is not on a writable volume", opts.PidFile)
	}
	grace := time.Duration(30) * time.Second
	if g := w.Template.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = time.Duration(*g) * time.Second
	}
	if ldm := opts.LameDuckDuration; ldm == 0 || grace <= ldm+opts.LameDuckGracePeriod {
		f.add("StatefulSet nats: terminationGracePeriodSeconds %s leaves no time for lame-duck mode (%s + %s)", grace, ldm, opts.LameDuckGracePeriod)
	}
	// The services ask for no more copies than there are servers.
	for _, sc := range c.ServiceContainers() {
		if st, err := sc.Service.LoadEnv(c.serviceEnvOrPlain(sc)); err == nil && st.NATSReplicas > int(w.Replicas) {
			f.add("%s: NATS_REPLICAS=%d, more than the %d NATS servers", sc.Service.Name, st.NATSReplicas, w.Replicas)
		}
	}
	return f.errs
}

// mountedFile returns the text of path in the container when a ConfigMap volume puts it there.
func (c *Cluster) mountedFile(w *Workload, ctr *corev1.Container, path string) (string, bool) {
	for _, m := range ctr.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range w.Template.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				if cm, ok := c.ConfigMaps[v.ConfigMap.Name]; ok {
					text, ok := cm.Data[rel]
					return text, ok
				}
			}
		}
	}
	return "", false
}

// serviceEnvOrPlain is ServiceEnv for the checks that judge something else: its error is
// checkServiceVariables's to report.
func (c *Cluster) serviceEnvOrPlain(sc ServiceContainer) map[string]string {
	env, _ := c.ServiceEnv(sc)
	return env
}

// mountedSecret returns the Secret and key whose file the container sees at path.
// mounted is mountedSecret's answer alone.
func mounted(_, _ string, ok bool) bool { return ok }

func (c *Cluster) mountedSecret(w *Workload, ctr *corev1.Container, path string) (secret, key string, ok bool) {
	for _, m := range ctr.VolumeMounts {
		rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range w.Template.Spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			key := rel
			if len(v.Secret.Items) > 0 {
				key = ""
				for _, it := range v.Secret.Items {
					if it.Path == rel {
						key = it.Key
					}
				}
			}
			keys, ok := c.secretKeys(v.Secret.SecretName)
			if _, has := keys[key]; ok && has {
				return v.Secret.SecretName, key, true
			}
		}
	}
	return "", "", false
}

// fileVars are the services' variables that name a file, which must come from a Secret.
var fileVars = []string{"NATS_CA_FILE", "LINK_KEYS_FILE"}

// ServiceEnv is the service's environment as ContainerEnv resolves it, with the files its
// variables name (mounted from a Secret, or an error) replaced by local stand-ins, so that
// the service's own start-up checks can read them.
func (c *Cluster) ServiceEnv(sc ServiceContainer) (map[string]string, error) {
	env := c.ContainerEnv(sc.Container).Values
	for _, name := range fileVars {
		path, ok := env[name]
		if !ok || path == "" {
			continue
		}
		secret, key, ok := c.mountedSecret(sc.Workload, sc.Container, path)
		if !ok {
			return env, fmt.Errorf("%s=%s is not a key of a Secret mounted in the container", name, path)
		}
		local, err := standInFile(key)
		if err != nil {
			return env, fmt.Errorf("%s=%s (Secret %s): %w", name, path, secret, err)
		}
		env[name] = local
	}
	return env, nil
}

// onClaim reports whether dir is on a volume from the StatefulSet's volumeClaimTemplates.
func (c *Cluster) onClaim(w *Workload, ctr *corev1.Container, dir string) bool {
	for _, m := range ctr.VolumeMounts {
		if within(dir, m.MountPath) && !m.ReadOnly && slices.ContainsFunc(w.StatefulSet.Spec.VolumeClaimTemplates,
			func(pvc corev1.PersistentVolumeClaim) bool { return pvc.Name == m.Name }) {
			return true
		}
	}
	return false
}

// claimSize is the storage a volumeClaimTemplate under dir requests; 0 if none.
func (c *Cluster) claimSize(w *Workload, ctr *corev1.Container, dir string) int64 {
	for _, m := range ctr.VolumeMounts {
		for _, pvc := range w.StatefulSet.Spec.VolumeClaimTemplates {
			if pvc.Name == m.Name && within(dir, m.MountPath) {
				q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
				return q.Value()
			}
		}
	}
	return 0
}

// provisionerPlan is the provisioning plan's settings as the provisioner reads them.
func (c *Cluster) provisionerPlan() (provision.Settings, bool) {
	for _, sc := range c.ServiceContainers() {
		if sc.Service.Name != "provision" {
			continue
		}
		env, err := c.ServiceEnv(sc)
		if err != nil {
			continue
		}
		if st, err := sc.Service.LoadEnv(env); err == nil {
			return st.Plan, true
		}
	}
	return provision.Settings{}, false
}

// onVolume reports whether path is on a writable mounted volume.
func (c *Cluster) onVolume(_ *Workload, ctr *corev1.Container, path string) bool {
	return slices.ContainsFunc(ctr.VolumeMounts, func(m corev1.VolumeMount) bool { return !m.ReadOnly && within(path, m.MountPath) })
}

func within(path, dir string) bool {
	dir = strings.TrimSuffix(dir, "/")
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// checkExposure: only the gateway is reachable from outside the namespace's pods.
func checkExposure(c *Cluster) []error {
	var f finder
	for _, s := range c.Services {
		if s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer {
			f.add("Service %s: type %s exposes it outside the cluster; only the gateway's Ingress may", s.Name, s.Spec.Type)
		}
		for _, w := range c.SelectingMap(s.Spec.Selector) {
			if w.Name == "scoring" || w.Name == "offers" {
				f.add("Service %s: selects %s, which takes no traffic", s.Name, w.Name)
			}
		}
	}
	for _, ing := range c.Ingresses {
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				if b := p.Backend.Service; b != nil {
					svc := c.service(b.Name)
					if svc == nil || !slices.ContainsFunc(c.SelectingMap(svc.Spec.Selector), func(w *Workload) bool { return w.Name == "gateway" }) {
						f.add("Ingress %s: path %s reaches Service %s, which is not the gateway", ing.Name, p.Path, b.Name)
					}
				}
			}
		}
	}
	if len(c.Ingresses) == 0 {
		f.add("no Ingress for the gateway")
	}
	return f.errs
}

func checkImages(c *Cluster) []error {
	var f finder
	for w, ctr := range c.containers {
		if !Pinned(ctr.Image) {
			f.add("%s %s container %s: image %q is not pinned to a tag", w.Kind, w.Name, ctr.Name, ctr.Image)
		}
	}
	return f.errs
}

// NATSUsers are the users every NATS configuration defines, each with its own allow-list
// (deploy/k8s/base/nats/users.conf).
var NATSUsers = []string{"gateway", "scoring", "offers", "conversions", "catalog", "importer", "auditor", "provision"}

// checkNATSUsers: one user per service, per operators' role and the provisioner's, each in an
// account of its own and with permissions, none allowed everything.
// checkNATSTLS: the servers and the services agree on TLS. Where the servers speak it, both
// ways: clients only over TLS, and routes too (the server always verifies a route's
// certificate, so a server without one of ours cannot join even with the password). The services then reach
// them at tls:// trusting a CA file from a Secret, and the certificate names the host they
// dial.
func (c *Cluster) checkNATSTLS(ss *appsv1.StatefulSet, opts *server.Options, certSecrets []string) []error {
	var f finder
	clientTLS, routeTLS := opts.TLSConfig != nil, opts.Cluster.TLSConfig != nil
	if clientTLS != routeTLS {
		f.add("StatefulSet nats: TLS for clients is %v, for routes %v: both or neither", clientTLS, routeTLS)
	}
	// Every container that dials NATS: the services' and a job's (the pre-approval import).
	for w, ctr := range c.containers {
		env := c.ContainerEnv(ctr).Values
		url, ca := env["NATS_URL"], env["NATS_CA_FILE"]
		_, isService := ServiceByName(ctr.Name)
		if _, dials := env["NATS_URL"]; w.Name == NATSName || !dials && !isService {
			continue
		}
		name := ctr.Name
		if w.Kind == "CronJob" {
			name = "CronJob " + w.Name
		}
		switch {
		case clientTLS && (!strings.HasPrefix(url, "tls://") || ca == ""):
			f.add("%s: NATS_URL %q and NATS_CA_FILE %q: the servers speak TLS, the service must dial tls:// and trust their CA", name, url, ca)
		case clientTLS && !mounted(c.mountedSecret(w, ctr, ca)):
			f.add("%s: NATS_CA_FILE %s is not a key of a Secret mounted in the container", name, ca)
		case !clientTLS && (strings.HasPrefix(url, "tls://") || ca != ""):
			f.add("%s: NATS_URL %q, NATS_CA_FILE %q: TLS the servers do not offer", name, url, ca)
		case clientTLS:
			host := strings.TrimPrefix(url, "tls://")
			if h, _, err := net.SplitHostPort(host); err == nil {
				host = h
			}
			for _, secret := range slices.Compact(slices.Sorted(slices.Values(certSecrets))) {
				if crt := c.certificateFor(secret); crt != nil && !slices.Contains(crt.Spec.DNSNames, host) {
					f.add("%s: dials %s, which Certificate %s (dnsNames %v) does not name", name, host, crt.Name, crt.Spec.DNSNames)
				}
			}
		}
	}
	// A route dials nats-<n>.<headless>: the servers' certificate must name those too.
	for _, secret := range slices.Compact(slices.Sorted(slices.Values(certSecrets))) {
		if crt := c.certificateFor(secret); routeTLS && crt != nil && !slices.Contains(crt.Spec.DNSNames, "*."+ss.Spec.ServiceName) {
			f.add("Certificate %s does not name the routes' hosts *.%s", crt.Name, ss.Spec.ServiceName)
		}
	}
	return f.errs
}

func checkNATSUsers(opts *server.Options) []error {
	var errs []error
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
	}
	if opts.Username != "" {
		errs = append(errs, fmt.Errorf("NATS: a single shared user %q: want one user per service", opts.Username))
	}
	// Each user in an account of its own: within one account a request's reply subject, which
	// the asker chooses and no permission checks, would send JetStream's answer into another
	// user's inbox or a stream's subjects (deploy/k8s/base/nats/users.conf).
	holder := map[string]string{}
	for _, u := range opts.Users {
		acc := server.DEFAULT_GLOBAL_ACCOUNT
		if u.Account != nil {
			acc = u.Account.Name
		}
		if other, ok := holder[acc]; ok {
			errs = append(errs, fmt.Errorf("NATS: users %q and %q share the account %s: want an account per user, or a reply of one reaches the other", other, u.Username, acc))
		}
		holder[acc] = u.Username
	}
	for _, name := range NATSUsers {
		u, ok := users[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("NATS: no user %q", name))
		case u.Permissions == nil || u.Permissions.Publish == nil || len(u.Permissions.Publish.Allow) == 0 ||
			u.Permissions.Subscribe == nil || len(u.Permissions.Subscribe.Allow) == 0:
			errs = append(errs, fmt.Errorf("NATS: user %q has no allow-lists: it may do everything", name))
		case slices.Contains(u.Permissions.Publish.Allow, ">") || slices.Contains(u.Permissions.Subscribe.Allow, ">"):
			errs = append(errs, fmt.Errorf("NATS: user %q may publish or subscribe to everything (\">\")", name))
		}
	}
	return errs
}
