# One image recipe for the four services and the provisioner; SERVICE names which (gateway,
# scoring, offers, conversions; provision is the operators' tool yactl, which its
# Deployment runs as `yactl provision -watch`). Build context: the repository root, because the binary is built in workspace
# mode from go.work:
#
#   docker build --build-arg SERVICE=gateway -t yacredits/gateway .
#
# (docker compose does this from docker-compose.yml.) The base images are arguments too, so
# that a registry mirror, or images built where no registry is reachable, can stand in:
# BUILDER_IMAGE needs the Go toolchain named by GO_VERSION and a shell; RUNTIME_IMAGE only
# what distroless static holds that the services use (CA certificates, for the conversions
# service's calls to Yandex; the nonroot user). tools/composeup builds the stack this way,
# from base images it makes on the machine.
#
# No "# syntax=" line: it would make BuildKit pull a Dockerfile frontend from a registry
# before every build, and nothing here needs more than the frontend built into BuildKit
# (cache mounts, --platform), so a build works where no registry is reachable.

ARG GO_VERSION=1.26.8
ARG BUILDER_IMAGE=golang:${GO_VERSION}
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM --platform=$BUILDPLATFORM ${BUILDER_IMAGE} AS build
WORKDIR /src
# go.work names every module of the workspace, and the go command loads each one's go.mod
# even to build a single binary: copy them all (deploy and tools only for their go.mod, and
# deploy for the health-check command). .dockerignore keeps tests and everything else out.
COPY go.work go.work.sum ./
COPY pkg/ pkg/
COPY services/ services/
COPY cmd/ cmd/
COPY deploy/go.mod deploy/go.sum deploy/
COPY deploy/cmd/healthcheck/ deploy/cmd/healthcheck/
COPY tools/go.mod tools/go.sum tools/
ARG SERVICE
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
# Static (no cgo), reproducible (-trimpath, no VCS stamp), cross-compiled for the target
# platform; the module and build caches survive between builds. The binary is renamed
# /out/service so that the runtime stage needs no argument (ENTRYPOINT does not expand one).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    case "$SERVICE" in \
      gateway|scoring|offers|conversions) pkg=./services/${SERVICE}/cmd/${SERVICE} ;; \
      provision) pkg=./cmd/yactl ;; \
      *) echo "SERVICE must be gateway, scoring, offers, conversions or provision, not '$SERVICE'" >&2; exit 1 ;; esac && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOTOOLCHAIN=local \
    go build -trimpath -buildvcs=false \
      -ldflags="-s -w -X github.com/demobank/yacredits/pkg/telemetry.Version=${VERSION}" \
      -o /out/ "$pkg" ./deploy/cmd/healthcheck && \
    mv "/out/${pkg##*/}" /out/service

# No shell, no package manager, not root: the binary on the runtime image (distroless static
# holds CA certificates and tzdata; the services read the certificates, never a time zone file).
FROM ${RUNTIME_IMAGE}
COPY --from=build /out/service /service
COPY --from=build /out/healthcheck /healthcheck
USER 65532:65532
# Every port one of the services serves: the gateway's API (8080), the conversions service's
# internal address (8090), and each service's health endpoints (8081).
EXPOSE 8080 8081 8090
ENTRYPOINT ["/service"]
