package check

import (
	"maps"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Endpoint is a source or destination of traffic: a pod of the overlay, a pod in another
// namespace, or an address outside the cluster.
type Endpoint struct {
	Name      string
	Namespace string // empty: outside the cluster
	NSLabels  map[string]string
	Labels    map[string]string
	IP        netip.Addr
	Ports     []corev1.ContainerPort // what it listens on (for named ports)
}

// Outside endpoints the network policies are evaluated against. Their namespaces are the
// ones networkpolicies.yaml names.
var outside = []Endpoint{
	{Name: "ingress-controller", Namespace: "ingress-nginx", Labels: map[string]string{"app.kubernetes.io/name": "ingress-nginx"}},
	{Name: "prometheus", Namespace: "monitoring", Labels: map[string]string{"app.kubernetes.io/name": "prometheus"}},
	{Name: "kube-dns", Namespace: "kube-system", Labels: map[string]string{"k8s-app": "kube-dns"}, Ports: []corev1.ContainerPort{
		{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}, {Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP}}},
	{Name: "other-namespace", Namespace: "default", Labels: map[string]string{"app": "something-else"}},
	// The bank's application system and site, in a namespace labelled as a conversions client.
	{Name: "bank-system", Namespace: "bank-apps", NSLabels: map[string]string{"yacredits.demobank.ru/conversions-client": "true"},
		Labels: map[string]string{"app": "applications"}},
	{Name: "internet", IP: netip.MustParseAddr("203.0.113.10"), Ports: []corev1.ContainerPort{{ContainerPort: 443}}},
}

// Flow is a connection the network policies must allow, or must not.
type Flow struct {
	From, To string // Endpoint names: a workload, or one of the outside ones
	Port     int32
	Protocol corev1.Protocol // empty: TCP
	Allowed  bool
}

// Flows are the connections the system needs, and a sample of those it must not get.
var Flows = []Flow{
	{From: "ingress-controller", To: "gateway", Port: 8080, Allowed: true},
	{From: "internet", To: "gateway", Port: 8080},
	{From: "other-namespace", To: "gateway", Port: 8080},
	{From: "ingress-controller", To: "gateway", Port: 8081},
	{From: "ingress-controller", To: "scoring", Port: 8081},
	{From: "ingress-controller", To: "nats", Port: 4222},
	{From: "ingress-controller", To: "jaeger", Port: 16686},
	{From: "internet", To: "nats", Port: 4222},
	{From: "other-namespace", To: "nats", Port: 4222},

	{From: "gateway", To: "nats", Port: 4222, Allowed: true},
	{From: "scoring", To: "nats", Port: 4222, Allowed: true},
	{From: "offers", To: "nats", Port: 4222, Allowed: true},
	{From: "gateway", To: "nats", Port: 6222},
	{From: "gateway", To: "nats", Port: 8222},
	{From: "jaeger", To: "nats", Port: 4222},
	{From: "nats", To: "nats", Port: 6222, Allowed: true},

	{From: "gateway", To: "jaeger", Port: 4318, Allowed: true},
	{From: "scoring", To: "jaeger", Port: 4317, Allowed: true},
	{From: "offers", To: "jaeger", Port: 4318, Allowed: true},
	{From: "gateway", To: "jaeger", Port: 16686},

	{From: "gateway", To: "scoring", Port: 8081},
	{From: "scoring", To: "gateway", Port: 8080},
	{From: "offers", To: "scoring", Port: 8081},

	{From: "gateway", To: "internet", Port: 443},
	{From: "scoring", To: "internet", Port: 443},
	{From: "offers", To: "internet", Port: 443},
	{From: "nats", To: "internet", Port: 443},
	{From: "jaeger", To: "internet", Port: 443},

	// The pre-approval import (a CronJob) reaches NATS and DNS, and nothing else: it holds the
	// phone-hash key.
	{From: "preapprovals-import", To: "nats", Port: 4222, Allowed: true},
	{From: "preapprovals-import", To: "kube-dns", Port: 53, Protocol: corev1.ProtocolUDP, Allowed: true},
	{From: "preapprovals-import", To: "internet", Port: 443},
	{From: "preapprovals-import", To: "jaeger", Port: 4318},
	{From: "preapprovals-import", To: "gateway", Port: 8081},
	{From: "preapprovals-import", To: "nats", Port: 6222},

	{From: "gateway", To: "kube-dns", Port: 53, Protocol: corev1.ProtocolUDP, Allowed: true},
	{From: "scoring", To: "kube-dns", Port: 53, Protocol: corev1.ProtocolUDP, Allowed: true},
	{From: "offers", To: "kube-dns", Port: 53, Protocol: corev1.ProtocolUDP, Allowed: true},
	{From: "nats", To: "kube-dns", Port: 53, Protocol: corev1.ProtocolUDP, Allowed: true},

	{From: "prometheus", To: "gateway", Port: 8081, Allowed: true},
	{From: "prometheus", To: "scoring", Port: 8081, Allowed: true},
	{From: "prometheus", To: "offers", Port: 8081, Allowed: true},
	{From: "prometheus", To: "nats", Port: 7777, Allowed: true},
	{From: "prometheus", To: "nats", Port: 8222},
	{From: "other-namespace", To: "nats", Port: 8222},
	{From: "scoring", To: "nats", Port: 8222},
	{From: "prometheus", To: "gateway", Port: 8080},
	{From: "prometheus", To: "nats", Port: 4222},

	// Conversions: the bank's systems in, Yandex (the internet) out, and nothing else.
	{From: "bank-system", To: "conversions", Port: 8090, Allowed: true},
	{From: "other-namespace", To: "conversions", Port: 8090},
	{From: "ingress-controller", To: "conversions", Port: 8090},
	{From: "internet", To: "conversions", Port: 8090},
	{From: "gateway", To: "conversions", Port: 8090},
	{From: "bank-system", To: "gateway", Port: 8080},
	{From: "bank-system", To: "nats", Port: 4222},
	{From: "conversions", To: "internet", Port: 443, Allowed: true},
	{From: "conversions", To: "internet", Port: 80},
	{From: "conversions", To: "nats", Port: 4222, Allowed: true},
	{From: "conversions", To: "jaeger", Port: 4318, Allowed: true},
	{From: "conversions", To: "kube-dns", Port: 53, Protocol: corev1.ProtocolUDP, Allowed: true},
	{From: "conversions", To: "gateway", Port: 8080},
	{From: "prometheus", To: "conversions", Port: 8081, Allowed: true},
	{From: "prometheus", To: "conversions", Port: 8090},
}

// Endpoints returns the overlay's pods (one per workload and per CronJob) and the outside
// endpoints.
func (c *Cluster) Endpoints() []Endpoint {
	nsLabels := map[string]string{"kubernetes.io/metadata.name": c.Namespace}
	for _, ns := range c.Namespaces {
		if ns.Name == c.Namespace {
			maps.Copy(nsLabels, ns.Labels)
		}
	}
	var out []Endpoint
	for _, w := range slices.Concat(c.Workloads, c.jobPods) {
		e := Endpoint{Name: w.Name, Namespace: c.Namespace, NSLabels: nsLabels, Labels: w.Template.Labels}
		for _, ctr := range w.Template.Spec.Containers {
			e.Ports = append(e.Ports, ctr.Ports...)
		}
		out = append(out, e)
	}
	for _, e := range outside {
		if e.Namespace != "" {
			l := map[string]string{"kubernetes.io/metadata.name": e.Namespace}
			maps.Copy(l, e.NSLabels)
			e.NSLabels = l
		}
		out = append(out, e)
	}
	return out
}

// Allowed reports whether the overlay's network policies let from open a connection to
// port/protocol at to: the source's egress and the destination's ingress must both allow
// it. Policies of other namespaces are not ours and taken to allow everything.
func (c *Cluster) Allowed(from, to Endpoint, proto corev1.Protocol, port int32) bool {
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	return c.allowedBy(networkingv1.PolicyTypeEgress, from, to, proto, port) &&
		c.allowedBy(networkingv1.PolicyTypeIngress, to, from, proto, port)
}

// allowedBy evaluates the policies of one direction that select pod; peer is the other end.
func (c *Cluster) allowedBy(dir networkingv1.PolicyType, pod, peer Endpoint, proto corev1.Protocol, port int32) bool {
	if pod.Namespace != c.Namespace {
		return true
	}
	dst := pod // whose ports a rule's named ports mean
	if dir == networkingv1.PolicyTypeEgress {
		dst = peer
	}
	selected := false
	for _, np := range c.NetworkPolicies {
		if !hasPolicyType(np, dir) || !matches(&np.Spec.PodSelector, pod.Labels) {
			continue
		}
		selected = true
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range np.Spec.Ingress {
				if c.peersMatch(r.From, peer) && portsMatch(r.Ports, dst, proto, port) {
					return true
				}
			}
		} else {
			for _, r := range np.Spec.Egress {
				if c.peersMatch(r.To, peer) && portsMatch(r.Ports, dst, proto, port) {
					return true
				}
			}
		}
	}
	return !selected
}

func hasPolicyType(np *networkingv1.NetworkPolicy, t networkingv1.PolicyType) bool {
	if len(np.Spec.PolicyTypes) > 0 {
		return slices.Contains(np.Spec.PolicyTypes, t)
	}
	return t == networkingv1.PolicyTypeIngress || len(np.Spec.Egress) > 0
}

func (c *Cluster) peersMatch(peers []networkingv1.NetworkPolicyPeer, e Endpoint) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if p.IPBlock != nil {
			if inBlock(p.IPBlock, e.IP) {
				return true
			}
			continue
		}
		if e.Namespace == "" { // an address outside the cluster is no pod
			continue
		}
		nsOK := e.Namespace == c.Namespace
		if p.NamespaceSelector != nil {
			nsOK = matches(p.NamespaceSelector, e.NSLabels)
		}
		podOK := p.PodSelector == nil || matches(p.PodSelector, e.Labels)
		if nsOK && podOK {
			return true
		}
	}
	return false
}

func inBlock(b *networkingv1.IPBlock, ip netip.Addr) bool {
	if !ip.IsValid() {
		return false // pods have no address in this model: ipBlocks are for outside
	}
	in := func(cidr string) bool {
		p, err := netip.ParsePrefix(cidr)
		return err == nil && p.Contains(ip)
	}
	return in(b.CIDR) && !slices.ContainsFunc(b.Except, in)
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, dst Endpoint, proto corev1.Protocol, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		pp := corev1.ProtocolTCP
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pp != proto {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.Int:
			if port == p.Port.IntVal || (p.EndPort != nil && port >= p.Port.IntVal && port <= *p.EndPort) {
				return true
			}
		default:
			if slices.ContainsFunc(dst.Ports, func(cp corev1.ContainerPort) bool {
				cpp := cp.Protocol
				if cpp == "" {
					cpp = corev1.ProtocolTCP
				}
				return cp.Name == p.Port.StrVal && cp.ContainerPort == port && cpp == proto
			}) {
				return true
			}
		}
	}
	return false
}

func matches(sel *metav1.LabelSelector, l map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(l))
}

func policyPeers(np *networkingv1.NetworkPolicy) []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for _, r := range np.Spec.Ingress {
		out = append(out, r.From...)
	}
	for _, r := range np.Spec.Egress {
		out = append(out, r.To...)
	}
	return out
}

// Roles in the network: the services may reach only these (endpoint, port) pairs, and the
// conversions service Yandex's endpoint on the internet besides.
var serviceEgress = map[string][]int32{"nats": {4222}, "jaeger": {4317, 4318}, "kube-dns": {53}}

var extraEgress = map[string]map[string][]int32{"conversions": {"internet": {443}}}

// jobEgress is every port a job's pods may reach (the pre-approval import: NATS and DNS).
var jobEgress = map[string][]int32{"nats": {4222}, "kube-dns": {53}}

// healthPorts are the only ports of a pod other than the gateway's API that anything from
// outside the namespace may reach (metrics and health, by monitoring).
var healthPortNames = []string{"health", "metrics"}

func checkNetworkPolicies(c *Cluster) []error {
	var f finder
	byName := map[string]Endpoint{}
	eps := c.Endpoints()
	for _, e := range eps {
		byName[e.Name] = e
	}
	// Deny by default, in both directions.
	if !slices.ContainsFunc(c.NetworkPolicies, func(np *networkingv1.NetworkPolicy) bool {
		empty := len(np.Spec.PodSelector.MatchLabels)+len(np.Spec.PodSelector.MatchExpressions) == 0
		return empty && hasPolicyType(np, networkingv1.PolicyTypeIngress) && hasPolicyType(np, networkingv1.PolicyTypeEgress) &&
			len(np.Spec.Ingress) == 0 && len(np.Spec.Egress) == 0
	}) {
		f.add("no default-deny NetworkPolicy (podSelector: {}, policyTypes Ingress and Egress, no rules)")
	}
	for _, fl := range Flows {
		from, okf := byName[fl.From]
		to, okt := byName[fl.To]
		if !okf || !okt {
			f.add("flow %s → %s: no such endpoint", fl.From, fl.To)
			continue
		}
		if got := c.Allowed(from, to, fl.Protocol, fl.Port); got != fl.Allowed {
			f.add("flow %s → %s:%d %s: allowed=%v, want %v", fl.From, fl.To, fl.Port, protoName(fl.Protocol), got, fl.Allowed)
		}
	}
	// Every port of every endpoint: the services reach only NATS, the trace collector and
	// DNS; only the gateway's API takes traffic from outside the namespace.
	for _, src := range eps {
		for _, dst := range eps {
			for _, p := range dst.Ports {
				if !c.Allowed(src, dst, p.Protocol, p.ContainerPort) {
					continue
				}
				if _, ok := ServiceByName(src.Name); ok && src.Namespace == c.Namespace && !slices.Contains(serviceEgress[dst.Name], p.ContainerPort) &&
					!slices.Contains(extraEgress[src.Name][dst.Name], p.ContainerPort) {
					f.add("%s can reach %s:%d; the services may reach only NATS, the trace collector and DNS (conversions: Yandex too)", src.Name, dst.Name, p.ContainerPort)
				}
				if slices.ContainsFunc(c.jobPods, func(w *Workload) bool { return w.Name == src.Name }) && !slices.Contains(jobEgress[dst.Name], p.ContainerPort) {
					f.add("job %s can reach %s:%d; a job may reach only NATS and DNS", src.Name, dst.Name, p.ContainerPort)
				}
				fromOutside := src.Namespace != c.Namespace
				if fromOutside && dst.Namespace == c.Namespace && !(dst.Name == "gateway" && p.Name == "http") &&
					!(src.Name == "prometheus" && slices.Contains(healthPortNames, p.Name)) &&
					!(src.Name == "bank-system" && dst.Name == "conversions" && p.Name == "internal") {
					f.add("%s can reach %s:%d from outside the namespace; only the gateway's API (and the bank's systems the conversions intake) may be", src.Name, dst.Name, p.ContainerPort)
				}
			}
		}
	}
	return f.errs
}

func protoName(p corev1.Protocol) string {
	if p == "" {
		return string(corev1.ProtocolTCP)
	}
	return string(p)
}
