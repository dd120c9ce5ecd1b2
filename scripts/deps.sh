#!/usr/bin/env bash
# Installs the database servers the tests and the demo start: PostgreSQL
# (initdb, pg_ctl, postgres, pg_basebackup, psql) and MariaDB (mariadbd,
# mariadb-install-db, mariadb). Debian packages, installed only when missing.
set -euo pipefail

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
if [ ${#pkgs[@]} -eq 0 ]; then
	echo "deps: PostgreSQL and MariaDB binaries present"
	exit 0
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
