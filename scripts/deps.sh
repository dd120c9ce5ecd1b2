#!/usr/bin/env bash
# Installs what the tests and the demo need, each only when missing:
# the database servers they start from local binaries, PostgreSQL (initdb,
# pg_ctl, postgres, pg_basebackup, psql) and MariaDB (mariadbd,
# mariadb-install-db, mariadb), as Debian packages; etcd and Patroni
# (Debian's etcd-server and patroni) for integration/internal/patroni;
# and, for the test kit's container backend, a Docker daemon (Debian's
# docker.io, started here when none answers and this runs as root) and the
# postgres and mariadb images (scripts/images.sh builds stand-ins from
# Debian packages where no registry can be reached). RWSPLIT_NO_DOCKER=1
# skips Docker.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

have_pg() {
	command -v initdb >/dev/null 2>&1 && command -v pg_basebackup >/dev/null 2>&1 && return 0
	compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_maria() {
	{ command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || [ -x /usr/sbin/mysqld ]; } &&
		{ command -v mariadb-install-db >/dev/null 2>&1 || command -v mysql_install_db >/dev/null 2>&1; } &&
		{ command -v mariadb >/dev/null 2>&1 || command -v mysql >/dev/null 2>&1; }
}

pkgs=()
have_pg || pkgs+=(postgresql)
have_maria || pkgs+=(mariadb-server mariadb-client)
# servers installs the database servers' packages when missing.
servers() {
	if [ ${#pkgs[@]} -eq 0 ]; then
		echo "deps: PostgreSQL and MariaDB binaries present"
		return 0
	fi

	if ! command -v apt-get >/dev/null 2>&1; then
		echo "deps: missing ${pkgs[*]} and no apt-get here; install them with your package manager" >&2
		exit 1
	fi
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || { echo "deps: need root (or sudo) to install ${pkgs[*]}" >&2; exit 1; }
		sudo=(sudo)
	fi
	echo "deps: installing ${pkgs[*]}"
	"${sudo[@]}" apt-get update -qq
	# The harness starts its own servers in temporary directories; the
	# packages' own services are not used.
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
	have_pg || { echo "deps: PostgreSQL still missing after install" >&2; exit 1; }
	have_maria || { echo "deps: MariaDB still missing after install" >&2; exit 1; }
	echo "deps: installed ${pkgs[*]}"
}

# have_fleet: etcd and Patroni for integration/internal/patroni (Debian's
# etcd-server puts etcd in /usr/bin, patroni puts patroni and patronictl
# there).
have_fleet() {
	command -v etcd >/dev/null 2>&1 && command -v patroni >/dev/null 2>&1 && command -v patronictl >/dev/null 2>&1
}

# fleet installs etcd-server and patroni when missing. The harness starts
# its own etcd and Patroni members on free loopback ports in temporary
# directories; the packages' own services must not run (a Debian etcd
# service would hold 127.0.0.1:2379 and 2380). A policy-rc.d that forbids
# starting services is put in place for the install when there is none,
# and under systemd the units are stopped and disabled afterwards.
fleet() {
	if have_fleet; then
		echo "deps: etcd and Patroni binaries present"
		return 0
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "deps: missing etcd-server and patroni and no apt-get here; install them with your package manager" >&2
		exit 1
	fi
	local sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || { echo "deps: need root (or sudo) to install etcd-server and patroni" >&2; exit 1; }
		sudo=(sudo)
	fi
	local policy=/usr/sbin/policy-rc.d own_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\n# rwsplit deps.sh: no service starts during this install\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
		"${sudo[@]}" chmod 755 "$policy"
		own_policy=1
	fi
	echo "deps: installing etcd-server patroni"
	local rc=0
	{ "${sudo[@]}" apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends etcd-server patroni; } || rc=$?
	[ -z "$own_policy" ] || "${sudo[@]}" rm -f "$policy"
	[ "$rc" -eq 0 ] || exit "$rc"
	if [ -d /run/systemd/system ]; then
		"${sudo[@]}" systemctl disable --now etcd.service patroni.service >/dev/null 2>&1 || true
	fi
	have_fleet || { echo "deps: etcd or Patroni still missing after install" >&2; exit 1; }
	echo "deps: installed etcd-server patroni"
}

# docker makes sure a Docker daemon answers: as root, it installs
# docker.io if dockerd is missing and starts dockerd in the background.
docker_daemon() {
	if docker info >/dev/null 2>&1; then
		echo "deps: a Docker daemon answers"
		return 0
	fi
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: no Docker daemon answers; start one (or run make deps as root), or set RWSPLIT_NO_DOCKER=1" >&2
		return 1
	fi
	if ! command -v dockerd >/dev/null 2>&1; then
		echo "deps: installing docker.io"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
	fi
	echo "deps: starting dockerd (log: /var/log/rwsplit-dockerd.log)"
	nohup dockerd >/var/log/rwsplit-dockerd.log 2>&1 &
	for _ in $(seq 60); do
		docker info >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	echo "deps: dockerd did not answer within 30s:" >&2
	tail -20 /var/log/rwsplit-dockerd.log >&2
	return 1
}

servers
fleet
if [ "${RWSPLIT_NO_DOCKER:-}" = 1 ]; then
	echo "deps: RWSPLIT_NO_DOCKER=1: no Docker"
	exit 0
fi
docker_daemon
bash "$here/images.sh"
