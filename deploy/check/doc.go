// Package check reads the deployment files the way the real tools do and checks them
// against the services: docker-compose.yml through compose-go (as docker compose loads
// it), deploy/k8s overlays through kustomize's krusty (as kubectl apply -k builds them),
// every Kubernetes object decoded strictly into the k8s.io/api types, and the NATS
// configuration through nats-server's own parser.
//
// The services say what they read: ServiceVars calls each one's LoadConfig with a getenv
// that records the names asked for, so a variable given to a container that no service
// reads (a typo, a renamed setting) is caught, and so are settings that do not load.
//
// Nothing here needs Docker, a cluster or the network; the tests beside it run in seconds.
package check
