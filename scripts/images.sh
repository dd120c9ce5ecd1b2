#!/usr/bin/env bash
# Builds stand-in images for postgres:15 and mariadb:10.11 from Debian 12
# packages, for machines that cannot reach an image registry. They have
# the official images' layout where the test kit (rwsplittest) could
# depend on it: server binaries in their official places, a postgres or
# mysql user and group with id 999, the data directory declared as a
# VOLUME, and an ENTRYPOINT, CMD and entrypoint script of their own that
# start a single server as the official ones do, so that the kit's tests
# prove it overrides them. Each image is built once per machine and reused
# by its tag; a machine that has the official images keeps them. (The
# official postgres image also sets STOPSIGNAL SIGINT, which docker import
# cannot set on Debian's Docker 20.10; the kit stops nodes itself.)
set -euo pipefail

PG_TAG=${PG_TAG:-postgres:15}
MARIA_TAG=${MARIA_TAG:-mariadb:10.11}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)

have() { docker image inspect "$1" >/dev/null 2>&1; }

if have "$PG_TAG" && have "$MARIA_TAG"; then
	echo "images: $PG_TAG and $MARIA_TAG present"
	exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
	echo "images: installing debootstrap"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}

work=$(mktemp -d /tmp/rwsplit-images.XXXXXX)
cleanup() {
	for m in proc dev/pts; do
		for d in "$work"/*/"$m"; do mountpoint -q "$d" 2>/dev/null && umount -l "$d" || true; done
	done
	rm -rf "$work"
}
trap cleanup EXIT

base="$work/base"
echo "images: debootstrap Debian 12 (minbase)"
debootstrap --variant=minbase bookworm "$base" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
	{ tail -20 "$work/debootstrap.log" >&2; exit 1; }
# No service starts inside the build.
printf '#!/bin/sh\nexit 101\n' >"$base/usr/sbin/policy-rc.d"
chmod +x "$base/usr/sbin/policy-rc.d"

# build_root ROOT USER PACKAGES...: a copy of the base with USER (id 999)
# created first, as the official images do, then the packages.
build_root() {
	local root=$1 user=$2
	shift 2
	cp -a "$base" "$root"
	mount -t proc proc "$root/proc"
	chroot "$root" /bin/sh -ec >"$root.log" 2>&1 "
		groupadd -r -g 999 $user
		useradd -r -g $user -u 999 -d /var/lib/$([ "$user" = postgres ] && echo postgresql || echo mysql) -s /bin/bash $user
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $* >/dev/null
		apt-get clean
		rm -rf /var/lib/apt/lists/*
	" || { tail -30 "$root.log" >&2; exit 1; }
	umount -l "$root/proc"
}

# import_image ROOT TAG CHANGES...: the root file system as image TAG.
import_image() {
	local root=$1 tag=$2
	shift 2
	rm -f "$root/usr/sbin/policy-rc.d"
	tar -C "$root" -c . | docker import "$@" - "$tag" >/dev/null
	echo "images: built $tag"
}

if ! have "$PG_TAG"; then
	pg="$work/pg"
	mkdir -p "$base/etc/postgresql-common"
	# As the official image: no cluster made by the package.
	echo 'create_main_cluster = false' >"$base/etc/postgresql-common/createcluster.conf"
	build_root "$pg" postgres postgresql-15 util-linux
	rm -rf "$base/etc/postgresql-common"
	install -m 755 "$here/images/postgres-entrypoint.sh" "$pg/usr/local/bin/docker-entrypoint.sh"
	mkdir -p "$pg/var/lib/postgresql/data" "$pg/var/run/postgresql"
	chroot "$pg" chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
	import_image "$pg" "$PG_TAG" \
		-c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/15/bin' \
		-c 'ENV PG_MAJOR=15' \
		-c 'ENV PGDATA=/var/lib/postgresql/data' \
		-c 'VOLUME /var/lib/postgresql/data' \
		-c 'EXPOSE 5432' \
		-c 'ENTRYPOINT ["docker-entrypoint.sh"]' \
		-c 'CMD ["postgres"]'
fi

if ! have "$MARIA_TAG"; then
	maria="$work/maria"
	build_root "$maria" mysql mariadb-server mariadb-client util-linux
	rm -rf "$maria/var/lib/mysql" "$maria/etc/mysql/mariadb.conf.d/50-server.cnf"
	mkdir -p "$maria/var/lib/mysql" "$maria/run/mysqld"
	chroot "$maria" chown -R mysql:mysql /var/lib/mysql /run/mysqld
	install -m 755 "$here/images/mariadb-entrypoint.sh" "$maria/usr/local/bin/docker-entrypoint.sh"
	import_image "$maria" "$MARIA_TAG" \
		-c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		-c 'VOLUME /var/lib/mysql' \
		-c 'EXPOSE 3306' \
		-c 'ENTRYPOINT ["docker-entrypoint.sh"]' \
		-c 'CMD ["mariadbd"]'
fi
