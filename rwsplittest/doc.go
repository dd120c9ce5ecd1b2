// Package rwsplittest starts real replicated database clusters for tests:
// a primary and replicas that replicate for real, which a test can read
// through rwsplit, break on purpose and repair.
//
// Two backends give one [Cluster] type:
//
//   - [RunPostgres] and [RunMariaDB] start every node in a container of
//     its own, with testcontainers-go, on a Docker network of the
//     cluster's own; the test reaches the nodes through ports mapped on
//     127.0.0.1. The kit brings its own start script and runs the servers'
//     own tools found in the image (initdb, pg_basebackup,
//     mariadb-install-db), so the official postgres and mariadb images
//     work as published.
//   - [StartPostgres] and [StartMariaDB] start the servers from binaries
//     installed on the machine, as processes in a temporary directory on
//     free loopback ports.
//
// Node 0 is the first primary and nodes 1..n the replicas; numbers do not
// change when roles do. [Cluster.DSN] is stable for the cluster's life (a
// restarted node comes back on the same port) and names a database the
// application user owns. Nodes tell themselves apart by
// inet_server_addr() (containers) or inet_server_port() (local), and by
// @@server_id on MariaDB.
//
//	c, err := rwsplittest.RunPostgres(ctx, "postgres:16", rwsplittest.WithReplicaDelay(200*time.Millisecond))
//	if err != nil { ... }
//	defer c.Close()
//	db, err := c.Open() // a *rwsplit.DB over the cluster
//
// [Run] picks the backend from the environment, and registers Close with
// a testing.TB.
//
// The local backend's full API is [StartLocal]: a [LocalCluster] whose
// [LocalNode]s can also be stopped gracefully, queried as an
// administrator, repointed ([LocalCluster.Follow]) or cloned again
// ([LocalCluster.Reclone]), with a delay per replica. rwsplit's own
// integration tests drive it; [StartPostgres] and [StartMariaDB] are the
// same clusters behind the [Cluster] type.
//
// On a machine where testcontainers-go believes it runs inside a
// container (it has /.dockerenv) but the mapped ports are on the host's
// own loopback, set TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1. Without the
// reaper container (TESTCONTAINERS_RYUK_DISABLED=true), Close still
// removes every container, its volumes and the network.
package rwsplittest
