package gateway

import (
	"net/http"
	"slices"

	"github.com/go-chi/chi/v5"

	"github.com/demobank/yacredits/pkg/contracts"
	"github.com/demobank/yacredits/pkg/health"
	"github.com/demobank/yacredits/pkg/provision"
)

// apiPaths are the three spellings of the method that the published pages use (spec §2);
// Yandex may call any of them, so each serves the same handlers.
var apiPaths = []string{
	"/integrations/v1/api/loan_approval",
	"/api/banking/loan_approval",
	"/integrations/api/banking/loan_approval",
}

// routes lists every path the gateway serves. Health endpoints stay outside the API's
// authentication so that probes never need credentials.
func (g *gateway) routes(withHealth bool) http.Handler {
	r := chi.NewRouter()
	r.Use(g.edge.middleware, g.recoverer)
	r.NotFound(g.notFound)
	r.MethodNotAllowed(g.methodNotAllowed)
	if withHealth {
		g.healthRoutes(r)
	}
	r.Group(func(r chi.Router) {
		r.Use(g.authenticate, g.rateLimit)
		for _, p := range apiPaths {
			r.Post(p, g.handleSubmit)
			r.Get(p, g.handlePoll)
		}
	})
	return r
}

func isOperational(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/metrics"
}

// healthRoutes serves the operational endpoints beside the API, the same handler the
// worker services use: ready while JetStream answers and the stream and buckets exist.
func (g *gateway) healthRoutes(r chi.Router) {
	ops := g.healthHandler()
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		r.Method(http.MethodGet, p, ops)
	}
}

// healthHandler serves the operational endpoints alone, for HEALTH_ADDR: ready once set up,
// while JetStream answers with the streams and buckets provisioned as planned, and while the watch of the
// searches bucket is live and caught up (without it no POST could be answered done).
func (g *gateway) healthHandler() http.Handler {
	checks := append(health.JetStream(g.js, []string{contracts.StreamLoan},
		[]string{contracts.BucketSearches, contracts.BucketGateway}),
		provision.Probe(g.js, g.provisioned()...),
		health.Func("set-up", g.setUp),
		health.Check{Name: "bucket watch", Probe: g.watch})
	list := health.List(checks...)
	if g.others != nil {
		list = func() []health.Check { return append(slices.Clip(checks), g.others()...) }
	}
	return health.Handler(list, g.metrics)
}
