#!/usr/bin/env bash
# Build pinned upstream Kubernetes control-plane binaries (kube-apiserver,
# kube-controller-manager, kube-scheduler), etcd, helm and promtool from the Go
# module proxy with this machine's Go, and cache them outside the repository.
#
# Why: the machines this project runs on reach package registries only (no
# release downloads, no GitHub), but `go` reaches the Go module proxy, and every
# one of these tools is a Go module there. So the real upstream servers can be
# built from source, pinned to exact versions, without committing any binary.
#
# Cache: ${QGOV_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qgov/kube}/<name>-<version>/
#   bin/        the binaries
#   module/     the wrapper module they were built from (go.mod, go.sum: exact dependency versions)
#   BUILDINFO   Go version, flags, build times, each binary's own --version output
# A directory appears only once everything in it is built (staged, then renamed),
# so a second run finds it and does nothing (no `go` call, well under a second).
#
# Usage: scripts/kube-binaries.sh [--print-path] [COMPONENT...]
#   COMPONENT   kubernetes | etcd | helm | promtool (default: these four), or the
#               pieces of a real node, built only when named: kubelet (kubelet,
#               kube-proxy, kubectl) | containerd (containerd, ctr, the runc shim) |
#               runc (cgo; seccomp if libseccomp-dev and pkg-config are installed) |
#               cni (bridge, loopback, host-local, portmap)
#   --print-path  build nothing; print the bin dirs, or fail naming what is missing
# Progress goes to stderr; stdout is one line, the bin dirs joined with ':', so
#   export PATH="$(scripts/kube-binaries.sh):$PATH"
# builds what is missing and sets PATH. From cold (empty Go caches) everything costs
# ~34 CPU-minutes (~20 min on an idle 2-core machine; 43 min measured on a busy one),
# downloads ~460 MB of modules and leaves ~8.5 GB in Go's caches (GOMODCACHE 2.7 GB,
# GOCACHE 5.8 GB: `go clean -cache` may go afterwards); the cache itself is ~400 MB.
#
# Why the wrapper modules: k8s.io/kubernetes is not meant to be a dependency.
# Its published go.mod requires its staging modules (k8s.io/api, client-go, ...)
# at v0.0.0 and points them at ./staging with `replace`, which is ignored outside
# its own repository. So each build is done in a small module that requires
# k8s.io/kubernetes vX.Y.Z and replaces every staging module it requires at
# v0.0.0 with the published v0.Y.Z (the list is read from that go.mod, not
# hard-coded). etcd's server module has the same kind of sibling `replace` lines
# (which `go install pkg@version` rejects), so every component is built the same
# way: a wrapper module that requires it, `go build -mod=mod`.
#
# Versions: Kubernetes 1.37 expects etcd 3.7 (kubeadm's DefaultEtcdVersion
# 3.7.0, go.etcd.io/etcd/client/v3 v3.7.0 in its go.mod); etcd is the newest
# 3.7 patch. Override any of them with QGOV_KUBERNETES_VERSION,
# QGOV_ETCD_VERSION, QGOV_HELM_VERSION, QGOV_PROMETHEUS_VERSION (a new version
# gets a new cache directory). Builds use only the machine's Go
# (GOTOOLCHAIN=local unless you set GOTOOLCHAIN): a pin that needs a newer Go
# fails with go's own message instead of fetching a toolchain.
set -euo pipefail

KUBERNETES_VERSION=${QGOV_KUBERNETES_VERSION:-v1.37.2}
ETCD_VERSION=${QGOV_ETCD_VERSION:-v3.7.3}
HELM_VERSION=${QGOV_HELM_VERSION:-v3.22.0}
PROMETHEUS_VERSION=${QGOV_PROMETHEUS_VERSION:-v0.316.0}   # Go module version of Prometheus 3.16.0
# A real node (opt-in components, not in the default set): kubelet, kube-proxy and
# kubectl from the same k8s.io/kubernetes as the control plane; containerd 2 (the
# kubelets of 1.36+ refuse containerd 1.x, Debian 12 ships 1.6); runc; CNI plugins.
CONTAINERD_VERSION=${QGOV_CONTAINERD_VERSION:-v2.4.2}
RUNC_VERSION=${QGOV_RUNC_VERSION:-v1.5.3}
CNI_VERSION=${QGOV_CNI_VERSION:-v1.10.0}

CACHE=${QGOV_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/qgov/kube}
ALL_COMPONENTS=(kubernetes etcd helm promtool)
NODE_COMPONENTS=(kubelet containerd runc cni)   # built only when named

log() { echo "[kube-binaries] $*" >&2; }
die() { echo "[kube-binaries] ERROR: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# timed FILE CMD...: run CMD; write "Ns wall, Ns CPU" to FILE (CPU: user+sys of go
# and every compiler it ran, which does not depend on what else loads the machine)
timed() {
  local f=$1 TIMEFORMAT='%R %U %S'; shift
  { time "$@" 2>&3 3>&-; } 3>&2 2>"$f.raw" || return
  awk '{ printf "%.1fs wall, %.1fs CPU", $1, $2 + $3 }' "$f.raw" >"$f"
  rm -f "$f.raw"
}

# --- what each component is -------------------------------------------------
# version_of NAME, binaries_of NAME ("binary=package" pairs)
version_of() {
  case $1 in
    kubernetes|kubelet) echo "$KUBERNETES_VERSION" ;;
    containerd) echo "$CONTAINERD_VERSION" ;;
    runc)       echo "$RUNC_VERSION" ;;
    cni)        echo "$CNI_VERSION" ;;
    etcd)       echo "$ETCD_VERSION" ;;
    helm)       echo "$HELM_VERSION" ;;
    promtool)   echo "$PROMETHEUS_VERSION" ;;
    *) die "unknown component '$1' (known: ${ALL_COMPONENTS[*]} ${NODE_COMPONENTS[*]})" ;;
  esac
}
binaries_of() {
  case $1 in
    kubernetes) echo "kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver" \
                     "kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager" \
                     "kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler" ;;
    etcd)       echo "etcd=go.etcd.io/etcd/server/v3" ;;
    helm)       echo "helm=helm.sh/helm/v3/cmd/helm" ;;
    promtool)   echo "promtool=github.com/prometheus/prometheus/cmd/promtool" ;;
    kubelet)    echo "kubelet=k8s.io/kubernetes/cmd/kubelet" \
                     "kube-proxy=k8s.io/kubernetes/cmd/kube-proxy" \
                     "kubectl=k8s.io/kubernetes/cmd/kubectl" ;;
    containerd) echo "containerd=github.com/containerd/containerd/v2/cmd/containerd" \
                     "ctr=github.com/containerd/containerd/v2/cmd/ctr" \
                     "containerd-shim-runc-v2=github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2" ;;
    runc)       echo "runc=github.com/opencontainers/runc" ;;
    cni)        local p; for p in main/bridge main/loopback ipam/host-local meta/portmap; do
                  echo "${p#*/}=github.com/containernetworking/plugins/plugins/$p"; done ;;
  esac
}
dir_of() { echo "$CACHE/$1-$(version_of "$1")"; }
is_built() {
  local d; d=$(dir_of "$1")
  [ -f "$d/BUILDINFO" ] || return 1
  local pair
  for pair in $(binaries_of "$1"); do [ -x "$d/bin/${pair%%=*}" ] || return 1; done
}

# --- wrapper go.mod for each component ----------------------------------------
# Writes $1/go.mod for component $2 and prints the build tags and -X ldflags
# (one line each) that make the binaries report their real version.
write_wrapper() {
  local mod=$1 name=$2 version; version=$(version_of "$name")
  local -a tags=() x=()
  case $name in
    kubernetes|kubelet)
      local meta gomod date minor
      meta=$(go list -m -f '{{.GoMod}} {{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' \
        "k8s.io/kubernetes@$version") \
        || die "the Go module proxy did not serve k8s.io/kubernetes@$version"
      gomod=${meta% *}; date=${meta##* }
      minor=${version#v1.}; minor=${minor%%.*}
      {
        echo "module qgov.invalid/kube-binaries/$name"
        echo "go 1.26"
        echo "require k8s.io/kubernetes $version"
        echo "replace ("
        # every staging module its go.mod requires at the placeholder v0.0.0
        awk '$1 == "require" { $1 = ""; $0 = substr($0, 2) }
             $2 == "v0.0.0" && $1 ~ /^k8s\.io\// { printf "\t%s => %s v0.%s\n", $1, $1, v }' \
            v="${version#v1.}" "$gomod"
        echo ")"
      } >"$mod/go.mod"
      grep -q '=>' "$mod/go.mod" || die "found no v0.0.0 staging modules in $gomod; has its layout changed?"
      # what upstream release builds use (hack/lib/golang.sh, hack/lib/version.sh)
      tags=(selinux notest grpcnotrace)
      local pkg
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        # gitCommit: the proxy does not say which commit a tag is; empty beats "$Format:%H$"
        x+=("-X $pkg.gitVersion=$version" "-X $pkg.gitMajor=1" "-X $pkg.gitMinor=$minor"
            "-X $pkg.buildDate=$date" "-X $pkg.gitCommit=")
      done
      ;;
    etcd)   # its version is a constant in go.etcd.io/etcd/api/v3/version
      printf 'module qgov.invalid/kube-binaries/%s\ngo 1.26\nrequire go.etcd.io/etcd/server/v3 %s\n' \
        "$name" "$version" >"$mod/go.mod"
      ;;
    helm)
      printf 'module qgov.invalid/kube-binaries/%s\ngo 1.26\nrequire helm.sh/helm/v3 %s\n' \
        "$name" "$version" >"$mod/go.mod"
      # helm's Makefile also stamps the Kubernetes API version it was built against
      local cg; cg=$(go -C "$mod" list -mod=mod -m -f '{{.Version}}' k8s.io/client-go)
      cg=${cg#v0.}; cg=${cg%%.*}
      x+=("-X helm.sh/helm/v3/internal/version.version=$version")
      local p; for p in pkg/lint/rules pkg/chartutil; do
        x+=("-X helm.sh/helm/v3/$p.k8sVersionMajor=1" "-X helm.sh/helm/v3/$p.k8sVersionMinor=$cg")
      done
      ;;
    promtool)
      printf 'module qgov.invalid/kube-binaries/%s\ngo 1.26\nrequire github.com/prometheus/prometheus %s\n' \
        "$name" "$version" >"$mod/go.mod"
      local meta pv date
      go mod download "github.com/prometheus/prometheus@$version" \
        || die "the Go module proxy did not serve github.com/prometheus/prometheus@$version"
      meta=$(go list -m -f '{{.Dir}} {{.Time.UTC.Format "20060102-15:04:05"}}' \
        "github.com/prometheus/prometheus@$version")
      date=${meta##* }
      pv=$(cat "${meta% *}/VERSION") || die "no VERSION file in prometheus@$version"
      tags=(netgo)   # as its .promu.yml
      x+=("-X github.com/prometheus/common/version.Version=$pv"
          "-X github.com/prometheus/common/version.Branch=$version"
          "-X github.com/prometheus/common/version.BuildUser=qgov-kube-binaries"
          "-X github.com/prometheus/common/version.BuildDate=$date")
      ;;
    containerd)
      printf 'module qgov.invalid/kube-binaries/%s\ngo 1.26\nrequire github.com/containerd/containerd/v2 %s\n' \
        "$name" "$version" >"$mod/go.mod"
      tags=(no_btrfs no_devmapper urfave_cli_no_docs)   # static build: no cgo snapshotters
      x+=("-X github.com/containerd/containerd/v2/version.Version=$version"
          "-X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2")
      ;;
    runc)   # needs cgo (its nsenter is C); seccomp when libseccomp's headers are here
      printf 'module qgov.invalid/kube-binaries/%s\ngo 1.26\nrequire github.com/opencontainers/runc %s\n' \
        "$name" "$version" >"$mod/go.mod"
      tags=(urfave_cli_no_docs)
      if pkg-config --exists libseccomp 2>/dev/null; then tags+=(seccomp)
      else log "runc: libseccomp headers not found (apt-get install libseccomp-dev pkg-config): building WITHOUT seccomp"; fi
      x+=("-X main.version=${version#v}")
      ;;
    cni)
      printf 'module qgov.invalid/kube-binaries/%s\ngo 1.26\nrequire github.com/containernetworking/plugins %s\n' \
        "$name" "$version" >"$mod/go.mod"
      x+=("-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$version")
      ;;
  esac
  (IFS=,; echo "${tags[*]-}")
  echo "${x[*]-}"
}

# How to ask each binary for its version (a smoke test that it runs at all).
version_cmd() {
  case $1 in
    helm) echo "version" ;;
    kubectl) echo "version --client" ;;
    bridge|loopback|host-local|portmap) echo "" ;;   # CNI plugins: CNI_COMMAND=VERSION
    *)    echo "--version" ;;
  esac
}

build() {
  local name=$1 version final stage t0 pair bin pkg tags xflags took
  version=$(version_of "$name"); final=$(dir_of "$name")
  stage=$(mktemp -d "$CACHE/.build-$name-$version.XXXXXX")
  chmod 755 "$stage"
  STAGES+=("$stage")
  mkdir -p "$stage/bin" "$stage/module"
  log "$name $version: resolving modules (wrapper module in $stage/module)"
  t0=$(now); took=$stage/module/took
  write_wrapper "$stage/module" "$name" >"$stage/module/flags"
  { read -r tags; read -r xflags; } <"$stage/module/flags"
  local -a pkgs=() buildflags=(-mod=mod -trimpath "-tags=$tags" "-ldflags=-s -w $xflags")
  local cgo=0; [ "$name" != runc ] || cgo=1
  export CGO_ENABLED=$cgo
  for pair in $(binaries_of "$name"); do pkgs+=("${pair#*=}"); done
  # Resolve and download every module the binaries need (updates go.mod/go.sum).
  timed "$took" go -C "$stage/module" list "${buildflags[@]:0:3}" -deps "${pkgs[@]}" >/dev/null \
    || die "$name $version: resolving dependencies failed (see go's message above)"
  {
    echo "component: $name $version"
    echo "go: $(go version)"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(nproc) cores"
    echo "flags: CGO_ENABLED=$cgo go build ${buildflags[*]@Q}"
    echo "resolve+download: $(cat "$took")"
  } >"$stage/BUILDINFO"
  log "$name $version: modules resolved in $(cat "$took")"
  for pair in $(binaries_of "$name"); do
    bin=${pair%%=*}; pkg=${pair#*=}
    log "$name $version: building $bin"
    timed "$took" go -C "$stage/module" build "${buildflags[@]}" -o "$stage/bin/$bin" "$pkg" \
      || die "$name $version: building $bin ($pkg) failed (see go's message above)"
    local out; out=$(CNI_COMMAND=VERSION "$stage/bin/$bin" $(version_cmd "$bin") 2>&1 | head -3) \
      || die "$name $version: $stage/bin/$bin does not run: $out"
    log "$name $version: $bin built in $(cat "$took"); it says: $(tr '\n' ' ' <<<"$out")"
    { echo "$bin: $(cat "$took")"; sed 's/^/  | /' <<<"$out"; } >>"$stage/BUILDINFO"
  done
  echo "total: $(since "$t0")s wall" >>"$stage/BUILDINFO"
  rm -f "$took"
  rm -rf "$final"    # an incomplete leftover (no BUILDINFO) from an older layout, if any
  mv "$stage" "$final"
  log "$name $version: done in $(since "$t0")s -> $final/bin"
}

# --- main ---------------------------------------------------------------------
print_only=0
components=()
for arg in "$@"; do
  case $arg in
    --print-path) print_only=1 ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    -*) die "unknown option $arg (try --help)" ;;
    *) version_of "$arg" >/dev/null; components+=("$arg") ;;
  esac
done
[ ${#components[@]} -gt 0 ] || components=("${ALL_COMPONENTS[@]}")

missing=()
for c in "${components[@]}"; do is_built "$c" || missing+=("$c"); done

if [ ${#missing[@]} -gt 0 ]; then
  [ $print_only = 0 ] || die "not built yet: ${missing[*]} (run $0 without --print-path)"
  command -v go >/dev/null || die "'go' is not on PATH; it is needed to build ${missing[*]}"
  export CGO_ENABLED=0 GOWORK=off GOTOOLCHAIN=${GOTOOLCHAIN:-local}
  mkdir -p "$CACHE"
  cd "$CACHE"   # module queries below must not run inside some other Go module
  STAGES=()
  trap 'for s in "${STAGES[@]}"; do [ ! -d "$s" ] || rm -rf "$s"; done' EXIT
  # One builder at a time per cache; a run that waited here finds the work done.
  exec 9>"$CACHE/.lock"
  flock 9
  log "building ${missing[*]} with $(go version) into $CACHE"
  T0=$(now)
  for c in "${missing[@]}"; do
    if ! is_built "$c"; then build "$c"; fi   # (not `||`: that would switch off set -e inside)
  done
  log "all built in $(since "$T0")s; cache uses $(du -sh "$CACHE" | cut -f1)"
fi

path=""
for c in "${components[@]}"; do path+="${path:+:}$(dir_of "$c")/bin"; done
echo "$path"
