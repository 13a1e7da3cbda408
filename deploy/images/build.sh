#!/bin/sh
# Builds every container image the pipeline needs on a machine with a Docker engine and no image registry:
# a Debian base from debootstrap, RabbitMQ, PostgreSQL and Python images from Debian's packages on it, then
# the project's image from the repository's Dockerfile.
#
#   deploy/images/build.sh            # or: make images
#   IMAGES="base python" deploy/images/build.sh     # only some of them (built in dependency order)
#   FORCE=1 deploy/images/build.sh    # rebuild base images that already exist
#
# The project's image is built every time (it follows the code; Docker's layer cache makes an unchanged
# tree a few seconds); the base images only when missing.
#
# Each local image carries two tags: the name a user of the real thing would pull (configurable below; a
# placeholder that only means "an image that behaves like it") and its true version, e.g.
# loggamera/rabbitmq:3.10.8-debian, so nothing pretends to be a version it is not. Where a registry is
# reachable, skip this script and let Docker pull the defaults.
set -eu

: "${DEBIAN_SUITE:=bookworm}"
: "${DEBIAN_MIRROR:=http://deb.debian.org/debian}"
: "${LOCAL_PREFIX:=loggamera}"
: "${BASE_IMAGE:=${LOCAL_PREFIX}/debian:${DEBIAN_SUITE}-minbase}"
: "${RABBITMQ_IMAGE:=rabbitmq:3.13-management}"
: "${POSTGRES_IMAGE:=postgres:16}"
: "${PYTHON_IMAGE:=python:3.11-slim}"
: "${ERASURE_IMAGE:=loggamera-erasure:dev}"
: "${IMAGES:=base rabbitmq postgres python erasure}"
: "${FORCE:=0}"
# Certificates a TLS-inspecting proxy on the build host signs with; pip inside the project's build must trust
# them (never switch verification off). Debian keeps locally added CAs here.
: "${EXTRA_CA_DIR:=/usr/local/share/ca-certificates}"

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }
exists() { docker image inspect "$1" >/dev/null 2>&1; }
wanted() { case " $IMAGES " in *" $1 "*) return 0 ;; esac; return 1; }
skip() { [ "$FORCE" != 1 ] && exists "$1"; }
# The version of a Debian package as installed in an image, without epoch or Debian revision
# (3.10.8-1.1 -> 3.10.8, 15+248 -> 15, 3.11.2-6+deb12u6 -> 3.11.2).
package_version() {
    docker run --rm --entrypoint dpkg-query "$1" -W -f '${Version}' "$2" | sed -e 's/^[0-9]*://' -e 's/[-+~].*$//'
}
timed() {
    name=$1; shift
    start=$(date +%s)
    "$@"
    say "$name ready in $(( $(date +%s) - start )) s ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%d MB", $1/1000000}'))"
}

command -v docker >/dev/null || die "no docker client: apt-get install docker.io containerd runc iptables"
docker info >/dev/null 2>&1 || die "no Docker engine answers: start one (sudo dockerd &) and run again"

build_base() {
    command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
    [ "$(id -u)" = 0 ] || die "debootstrap needs root to build the base image"
    root=$(mktemp -d)
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >"$root.log" 2>&1 \
        || { tail -20 "$root.log" >&2; die "debootstrap failed (log: $root.log)"; }
    rm -f "$root.log"
    # Services must not start while packages install inside a build; no caches or package lists in layers.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$root/etc/apt/apt.conf.d/90-container"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" -c . | docker import \
        -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - "$BASE_IMAGE" >/dev/null
    rm -rf "$root"
    trap - EXIT
}

# build_from DIR PUBLIC_TAG PACKAGE: build deploy/images/DIR as PUBLIC_TAG, then tag it with the version of
# PACKAGE it really holds, e.g. loggamera/rabbitmq:3.10.8-debian.
build_from() {
    dir=$1; public=$2; package=$3
    docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$public" "$here/$dir" >/dev/null
    version=$(package_version "$public" "$package")
    [ -n "$version" ] || die "cannot read the version of $package in $public"
    docker tag "$public" "$LOCAL_PREFIX/$dir:$version-debian"
    say "$public is $package $version: also tagged $LOCAL_PREFIX/$dir:$version-debian"
}

image=$BASE_IMAGE
if wanted base; then
    if skip "$BASE_IMAGE"; then say "base: $BASE_IMAGE exists"; else timed base build_base; fi
fi
exists "$BASE_IMAGE" || die "the base image $BASE_IMAGE is missing: build it first (IMAGES=base)"

if wanted rabbitmq; then
    image=$RABBITMQ_IMAGE
    if skip "$image"; then say "rabbitmq: $image exists"; else
        timed rabbitmq build_from rabbitmq "$image" rabbitmq-server
    fi
fi

if wanted postgres; then
    image=$POSTGRES_IMAGE
    if skip "$image"; then say "postgres: $image exists"; else
        timed postgres build_from postgres "$image" postgresql
    fi
fi

if wanted python; then
    image=$PYTHON_IMAGE
    if skip "$image"; then say "python: $image exists"; else
        timed python build_from python "$image" python3.11
    fi
fi

# The CAs reach only the build stage of ../Dockerfile; the final image gets none of them.
build_erasure() {
    extra_ca=""
    if [ -d "$EXTRA_CA_DIR" ] && ls "$EXTRA_CA_DIR"/*.crt >/dev/null 2>&1; then
        extra_ca=$(cat "$EXTRA_CA_DIR"/*.crt)
    fi
    docker build -q --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" --build-arg "EXTRA_CA_CERTS=$extra_ca" \
        -t "$ERASURE_IMAGE" "$repo" >/dev/null
}

if wanted erasure; then
    image=$ERASURE_IMAGE
    exists "$PYTHON_IMAGE" || die "the Python image $PYTHON_IMAGE is missing: build it first (IMAGES=python)"
    timed erasure build_erasure
fi

docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' \
    | grep -E "^($LOCAL_PREFIX/|${RABBITMQ_IMAGE%%:*}:|${POSTGRES_IMAGE%%:*}:|${PYTHON_IMAGE%%:*}:|${ERASURE_IMAGE%%:*}:)" || true
