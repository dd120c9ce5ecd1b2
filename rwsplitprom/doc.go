// Package rwsplitprom exports the metrics of rwsplit DBs to Prometheus
// (prometheus/client_golang): a [Collector] over one or more
// [rwsplit.DB]s, told about every call and event by the observer it gives
// each DB, and about the nodes by [rwsplit.DB.Stats] at each scrape.
//
//	c, err := rwsplitprom.New()
//	if err != nil { ... }
//	prometheus.MustRegister(c)
//	db, err := rwsplit.Open("pgx", primaryDSN, replicaDSNs,
//		rwsplit.WithObserver(c.Observer("orders")))
//	if err != nil { ... }
//	c.Track("orders", db)
//	defer func() { c.Untrack("orders"); db.Close() }()
//
// Every series has a db label, the name given to [Collector.Observer]
// and [Collector.Track]; node series a node label, the node's name as
// rwsplit gives it ([rwsplit.Open]: host:port; [rwsplit.New]: primary,
// replica1, ... or [rwsplit.WithNodeNames]). No label holds a DSN, a
// password, an error text or a session token. Durations are in seconds,
// counters end in _total.
//
// Counted by the observer, for the Collector's life:
//
//	rwsplit_calls_total{db,node,role,op,reason,outcome}        counter
//	rwsplit_call_duration_seconds{db,node,op}                  histogram
//	rwsplit_write_outage_seconds{db}                           histogram
//	rwsplit_session_wait_seconds{db,where}                     histogram
//	rwsplit_promotion_duration_seconds{db,outcome}             histogram
//	rwsplit_node_state_changes_total{db,node,state}            counter
//
// calls_total counts attempts: a read retried on another node counts
// once per node. op is query, exec, begin or conn (statements in a
// transaction or on a Conn are not calls of their own: they ran where
// the begin or conn was counted). reason is [rwsplit.Reason]'s word
// (policy, rule, forced, fallback, session, consistency, schema, retry,
// hedge), or none for a refused call. outcome is ok; error; canceled,
// when the caller's context ended; or refused, when no node was tried
// (no replica eligible within the fallback limit, no primary, a split
// brain), with node and role empty. call_duration_seconds has the time
// of each attempt that reached a node, to its first response.
// session_wait_seconds' where is replica (one caught up in time) or
// primary. node_state_changes_total's state is ejected, reinstated,
// fenced, unfenced, lagging or caught-up.
//
// Read from Stats at each scrape, while the DB is tracked:
//
//	rwsplit_info{db,dialect,policy}                             gauge, 1
//	rwsplit_eligible_replicas{db}                               gauge
//	rwsplit_fallbacks_total{db}                                 counter
//	rwsplit_fallback_refusals_total{db}                         counter
//	rwsplit_primary_changes_total{db}                           counter
//	rwsplit_fencings_total{db}                                  counter
//	rwsplit_split_brains_total{db}                              counter
//	rwsplit_writes_refused{db}                                  gauge, 0 or 1
//	rwsplit_last_write_outage_seconds{db}                       gauge
//	rwsplit_promotions_total{db,outcome="promoted|failed"}      counter
//	rwsplit_session_reads_total{db,where="replica|primary"}     counter
//	rwsplit_position_reads_total{db}                            counter
//	rwsplit_tokens_rejected_total{db}                           counter
//	rwsplit_schema_floor{db}                                    gauge, 0 or 1
//	rwsplit_schema_reruns_total{db}                             counter
//	rwsplit_node_up{db,node}                                    gauge, 0 or 1
//	rwsplit_node_fenced{db,node}                                gauge, 0 or 1
//	rwsplit_node_eligible{db,node}                              gauge, 0 or 1
//	rwsplit_node_role{db,node,role="primary|replica"}           gauge, 1 for the node's role
//	rwsplit_node_replication_lag_seconds{db,node}               gauge, replicas whose lag is known
//	rwsplit_node_replication_broken{db,node}                    gauge, 0 or 1, replicas whose lag is known
//	rwsplit_node_in_flight_calls{db,node}                       gauge
//	rwsplit_node_latency_seconds{db,node}                       gauge, after the first answer
//	rwsplit_node_ejections_total{db,node}                       counter
//	rwsplit_node_retries_total{db,node}                         counter
//	rwsplit_node_read_only_retries_total{db,node}               counter
//	rwsplit_node_hedges_total{db,node}                          counter
//	rwsplit_node_hedge_wins_total{db,node}                      counter
//	rwsplit_node_errors_total{db,node}                          counter
//	rwsplit_node_connections{db,node,state="in_use|idle"}       gauge
//	rwsplit_node_connection_waits_total{db,node}                counter
//	rwsplit_node_connection_wait_seconds_total{db,node}         counter
//
// These count from the DB's start, so a DB reopened under the same name
// starts them again from zero, which Prometheus' rate() reads as a
// counter reset.
//
// The observer adds to each call a map lookup, an atomic add and a
// histogram observation, and allocates nothing once a call's series
// exists; the Stats-based series cost nothing between scrapes. Several
// observers compose: give [rwsplit.WithObserver] once per observer.
package rwsplitprom
