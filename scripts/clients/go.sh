#!/usr/bin/env bash
# Builds the Go client checks of tests/clients/go (sarama and kafka-go, from the sources Debian
# packages under /usr/share/gocode) offline: GOPATH mode (GO111MODULE=off), GOPROXY=off. The
# binaries go to .cache/clients/go/bin (git-ignored), with the Debian package's upstream version
# stamped in. Installs the Debian packages first when any is missing (apt-get, as root or with
# sudo). Idempotent: a second run finds everything in the build cache and only relinks.
set -euo pipefail
repo_root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="$repo_root/.cache/clients/go"
packages=(golang-go golang-github-shopify-sarama-dev golang-github-segmentio-kafka-go-dev
  gcc libc6-dev pkg-config libzstd-dev)

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

install_missing_packages() {
  local missing=() package
  for package in "${packages[@]}"; do
    installed "$package" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return
  local as_root=""
  [ "$(id -u)" = 0 ] || as_root="sudo"
  echo "installing ${missing[*]}" >&2
  $as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

# The upstream part of a Debian package version: 1.22.1-1 -> 1.22.1, 0.2.1-1.1 -> 0.2.1.
upstream_version() {
  local version
  version="$(dpkg-query -W -f='${Version}' "$1")"
  version="${version#*:}"
  echo "${version%-*}"
}

# build PACKAGE DEBIAN_PACKAGE BINARY: go build of fastlog-clients/PACKAGE into the cache.
build() {
  GO111MODULE=off GOFLAGS= GOPROXY=off GOPATH="$cache/gopath:/usr/share/gocode" \
    GOCACHE="$cache/build-cache" CGO_ENABLED=1 CGO_CFLAGS="-g -O2 -Wno-deprecated-declarations" \
    go build -ldflags "-X main.libraryVersion=$(upstream_version "$2")" -o "$cache/bin/$3" "fastlog-clients/$1"
  touch "$cache/bin/$3" # newer than the sources, even when go build found nothing to do
  echo "$cache/bin/$3"
}

install_missing_packages
# Our sources join Debian's GOPATH as the package tree fastlog-clients/.
mkdir -p "$cache/gopath/src" "$cache/bin"
ln -sfn "$repo_root/tests/clients/go" "$cache/gopath/src/fastlog-clients"
build sarama golang-github-shopify-sarama-dev sarama-check
build kafkago golang-github-segmentio-kafka-go-dev kafkago-check
