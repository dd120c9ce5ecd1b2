// Package patroni starts a real etcd and a Patroni-managed PostgreSQL
// cluster on loopback, for tests of code that follows Patroni (rwsplit's
// fleet tests use it with rwsplit.NewPatroni). It shares the local
// backend's process handling (rwsplittest/internal/localos).
//
// [Start] runs one etcd (Debian etcd-server, 3.4) and N Patroni members
// (Debian patroni, 3.0) over the highest PostgreSQL found in
// /usr/lib/postgresql/<version>/bin, each on free 127.0.0.1 ports in a
// temporary directory, with the short timings of [TTL], [LoopWait] and
// [RetryTimeout] (5 s, 1 s, 2 s; a lower retry_timeout left the cluster
// leaderless), use_pg_rewind, use_slots and, with
// Options.Synchronous, synchronous_mode. scripts/deps.sh installs the
// packages. When the test runs as root, etcd, Patroni and PostgreSQL run
// as the postgres user (Patroni refuses root), still as children of the
// test process.
//
// Accounts: [AppUser] owns [AppDatabase] (created by a post_bootstrap
// script before any replica clones the leader); [MonitorUser] is in
// pg_monitor; [SuperUser] and [ReplUser] are Patroni's. TCP connections
// use scram-sha-256 passwords. [Cluster.DSN] and [DSNFor] give pgx URLs.
//
// # REST endpoints
//
// Each member's REST API is reached through a small TCP proxy in the
// harness: [Cluster.Endpoints] returns the proxies, and each member
// advertises its proxy as api_url, so [Cluster.StopAPI] makes an endpoint
// refuse connections for everyone (clients, the other members,
// patronictl) while the member's Patroni and PostgreSQL go on working
// and it keeps its leader lock. A stopped, killed or removed member's
// endpoint refuses connections too. The harness's own queries
// ([Cluster.Status], [Cluster.Leader], the waits) go to Patroni's
// listeners directly and work with every endpoint cut.
//
// # What Patroni 3.0.2 shows
//
//   - GET /cluster roles are "leader", "sync_standby" and "replica"; the
//     /patroni, /primary and /replica bodies say "role": "master" for the
//     leader. A streaming replica's state is "running" (later versions
//     say "streaming"), so the harness checks streaming in the leader's
//     GET /patroni "replication" list (pg_stat_replication).
//   - A killed member stays in /cluster with its last state ("running",
//     and "leader" for a killed leader) until its key expires: 5.2–5.4 s
//     after the kill here.
//   - A stopped member shows "stopped" once Patroni has shut PostgreSQL
//     down (1.5–2.6 s after SIGTERM) and disappears from /cluster when its
//     key expires, about 5 s later: [Cluster.RemoveMember] returned 6.7–7.5
//     s after the stop.
//   - In synchronous_mode Patroni accepts only the synchronous standby as
//     switchover candidate (HTTP 412 otherwise) and promotes only it.
//
// # Timings measured here (2 cores, go test -race)
//
//   - bootstrap of 3 members with a synchronous standby chosen: 4.7–9.6 s
//     (etcd healthy in 0.2–0.9 s; the synchronous standby alone takes
//     about 3 s after the replicas stream);
//   - switchover until the candidate takes a commit: 1.5–2.1 s (2.4 s
//     through patronictl, which waits for Patroni's once-a-second poll);
//     until the old leader streams again and a synchronous standby is
//     chosen: about 7 s;
//   - leader killed until a new leader takes a commit: 5.3–5.6 s, with
//     no acknowledged write lost under synchronous_mode;
//   - killed leader restarted until it streams (pg_rewind): 4.8–6.4 s;
//   - new member (pg_basebackup from the leader) until it streams:
//     1.6–3.7 s.
//
// # Processes
//
// PostgreSQL is detached from Patroni (its own session), so killing
// Patroni leaves it running: [Cluster.KillMember] and [Cluster.Close] also
// kill the postmaster named in postmaster.pid and all its processes.
// Every process of a cluster has [Cluster.Scope] in its command line
// (PostgreSQL's through cluster_name), which Close uses to check that
// nothing is left (as pgrep -f would). If the test process itself is
// killed, etcd and Patroni die with it (parent-death signal) but
// PostgreSQL survives; the next [Start] in any test process kills such
// leftovers and removes their directories. Patroni's PostgreSQL and REST
// ports are picked free just before Patroni binds them; another process
// could take one in between (etcd's are retried).
//
// Logs: etcd.log and <member>/patroni.log (which also holds PostgreSQL's
// log) under [Cluster.Dir]; a failed Start or wait includes their tails.
package patroni
