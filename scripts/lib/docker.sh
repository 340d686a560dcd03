#!/usr/bin/env bash
# Docker on machines that cannot pull public base images: sourced by
# scripts/fresh-debian-check and scripts/docker-check (both run by hand, as root).
#
# lf_docker_ready installs docker.io (and debootstrap, docker-compose) when missing and
# starts dockerd. lf_fresh_debian_image makes leadflow-fresh-debian:bookworm: a
# `debootstrap`ped minimal bookworm with `ca-certificates` (plus this machine's CA bundle,
# for networks that inspect TLS) and this machine's stable Rust toolchain under /root, as
# rustup would install it — nothing else. The other stand-ins are made from it.
#
# Callers set $work (a scratch directory) and define log and die.

LF_FRESH_IMAGE=leadflow-fresh-debian:bookworm

lf_docker_ready() {
  [[ ${EUID:-$(id -u)} -eq 0 ]] || die "run as root (docker, debootstrap)"
  local need=()
  command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  if ((${#need[@]} > 0)); then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log in $work/dockerd.log)"
    mkdir -p "$work"
    nohup dockerd >"$work/dockerd.log" 2>&1 &
    local i
    for ((i = 0; i < 60; i++)); do
      docker info >/dev/null 2>&1 && break
      sleep 1
    done
    docker info >/dev/null 2>&1 || die "dockerd did not start (see $work/dockerd.log)"
  fi
}

# The host's stable toolchain's name (stable-x86_64-unknown-linux-gnu) and version (1.95.0).
lf_host_toolchain() {
  rustup toolchain list | sed -n 's/^\(stable-[^ ]*\).*/\1/p' | head -n 1
}

lf_fresh_debian_image() {
  docker image inspect "$LF_FRESH_IMAGE" >/dev/null 2>&1 && return 0
  local toolchain rootfs=$work/rootfs tool
  toolchain=$(lf_host_toolchain)
  [[ -n $toolchain ]] || die "no stable Rust toolchain on this machine to copy into the image"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  log "debootstrapping Debian 12 (bookworm, minbase) into $rootfs"
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
    die "debootstrap failed (see $work/debootstrap.log)"
  cat /etc/ssl/certs/ca-certificates.crt >>"$rootfs/etc/ssl/certs/ca-certificates.crt"
  log "copying the Rust toolchain $toolchain (as rustup would install it, under /root)"
  mkdir -p "$rootfs/root/.rustup/toolchains" "$rootfs/root/.cargo/bin"
  cp -a "$HOME/.rustup/toolchains/$toolchain" "$rootfs/root/.rustup/toolchains/"
  printf 'version = "12"\ndefault_toolchain = "%s"\n' "$toolchain" >"$rootfs/root/.rustup/settings.toml"
  cp -a "$HOME/.cargo/bin/rustup" "$rootfs/root/.cargo/bin/"
  for tool in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
    ln -sf rustup "$rootfs/root/.cargo/bin/$tool"
  done
  log "importing the rootfs as $LF_FRESH_IMAGE"
  tar -C "$rootfs" -c . | docker import -c 'ENV PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$LF_FRESH_IMAGE" >/dev/null
  rm -rf "$rootfs"
}
