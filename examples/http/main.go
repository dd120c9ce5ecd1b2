// Command http shows read-your-writes across HTTP requests with
// rwsplit's SessionMiddleware: a client creates a note (POST, written on
// the primary), is redirected (303) to the note's page, and the page's
// read, which would normally go to a replica, finds the note although the
// replicas apply changes 300ms late. The session token travels in a
// cookie.
//
// With RWSPLIT_PRIMARY unset it starts a local PostgreSQL primary with two
// streaming replicas, each delayed by 300ms (recovery_min_apply_delay), in a
// temporary directory (the server binaries come from `make deps`) and
// stops them at the end. Otherwise it uses the PostgreSQL DSNs
// RWSPLIT_PRIMARY and the comma-separated RWSPLIT_REPLICAS.
//
// It exits with status 1 if any read after a create missed its note.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/rwsplit/rwsplit"
	"github.com/rwsplit/rwsplit/rwsplittest"
)

const (
	creates    = 20
	applyDelay = 300 * time.Millisecond
)

func main() {
	log.SetFlags(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		log.Printf("http: %v", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	primaryDSN := os.Getenv("RWSPLIT_PRIMARY")
	var replicaDSNs []string
	if r := os.Getenv("RWSPLIT_REPLICAS"); r != "" {
		replicaDSNs = strings.Split(r, ",")
	}
	if primaryDSN == "" {
		fmt.Printf("Starting a local PostgreSQL primary with 2 streaming replicas, applying %s late...\n", applyDelay)
		start := time.Now()
		c, err := rwsplittest.StartPostgres(ctx, rwsplittest.WithReplicaDelay(applyDelay))
		if err != nil {
			return err
		}
		defer func() {
			c.Close()
			fmt.Println("\nLocal cluster stopped and removed.")
		}()
		fmt.Printf("Cluster up in %s.\n", time.Since(start).Round(100*time.Millisecond))
		primaryDSN = c.DSN(0)
		for i := 1; i < c.Nodes(); i++ {
			replicaDSNs = append(replicaDSNs, c.DSN(i))
		}
	}

	db, err := rwsplit.Open("pgx", primaryDSN, replicaDSNs)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return err
	}
	// Wait until every replica has the table too, so that no read fails
	// on a replica that has not created it yet.
	all := rwsplit.WithWriteConcern(ctx, rwsplit.WriteConcern{Replicas: rwsplit.AllReplicas, Timeout: 30 * time.Second})
	if _, err := db.ExecContext(all, "CREATE TABLE IF NOT EXISTS notes (id bigint PRIMARY KEY, body text NOT NULL)"); err != nil {
		return err
	}

	// The app: any router works; this one is net/http's ServeMux.
	a := app{db: db}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /notes", a.create)
	mux.HandleFunc("GET /notes/{id}", a.show)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: db.SessionMiddleware(rwsplit.HTTPSessionOptions{})(mux), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String()
	fmt.Printf("App listening on %s\n", base)

	// The client: a browser-like one, with a cookie jar, following
	// redirects.
	jar, err := cookiejar.New(nil)
	if err != nil {
		return err
	}
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	ports := nodePorts(db)

	fmt.Printf("\n1. Create a note, follow the 303 to its page, read it (%d times)\n", creates)
	var ids []int64
	found, onReplicas := 0, 0
	for i := range creates {
		n, ok, err := createNote(client, base, fmt.Sprintf("note %d", i+1))
		if err != nil {
			return err
		}
		ids = append(ids, n.ID)
		if ok {
			found++
		}
		if ports.role(n.Port) == "replica" {
			onReplicas++
		}
		fmt.Printf("   %2d. POST /notes -> 303 -> GET /notes/%d: %s\n", i+1, n.ID, ports.describe(n, ok))
	}
	fmt.Printf("   %d/%d reads found their note; %d served by replicas\n", found, creates, onReplicas)
	if u, err := url.Parse(base); err == nil {
		for _, c := range jar.Cookies(u) {
			fmt.Printf("   (cookie %s: %d characters, replication positions only)\n", c.Name, len(c.Value))
		}
	}

	fmt.Println("\n2. Wait for the replicas to catch up (1s), then read the notes again")
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return ctx.Err()
	}
	again, againReplicas := 0, 0
	for i, id := range ids {
		resp, err := client.Get(fmt.Sprintf("%s/notes/%d", base, id))
		if err != nil {
			return err
		}
		n, err := decode(resp)
		if err != nil {
			return err
		}
		if n.Found {
			again++
		}
		if ports.role(n.Port) == "replica" {
			againReplicas++
		}
		fmt.Printf("   %2d. GET /notes/%d: %s\n", i+1, id, ports.describe(n, n.Found))
	}
	fmt.Printf("   %d/%d reads found their note; %d served by replicas\n", again, len(ids), againReplicas)

	const contrast = 5
	fmt.Printf("\n3. For contrast, a client without cookies (no session) creates and reads %d notes\n", contrast)
	noSession := &http.Client{Timeout: 30 * time.Second}
	seen := 0
	for i := range contrast {
		n, ok, err := createNote(noSession, base, fmt.Sprintf("cookieless note %d", i+1))
		if err != nil {
			return err
		}
		if ok {
			seen++
		}
		fmt.Printf("   %2d. POST /notes -> 303 -> GET /notes/%d: %s\n", i+1, n.ID, ports.describe(n, ok))
	}
	fmt.Printf("   %d/%d found: without the session a read goes to any replica, %s behind\n", seen, contrast, applyDelay)

	fmt.Println("\n4. db.Stats()")
	for _, l := range strings.SplitAfter(db.Stats().String(), "\n") {
		if l != "" {
			fmt.Print("   " + l)
		}
	}

	if found < creates || again < len(ids) {
		return fmt.Errorf("%d of %d reads with the session missed their note", creates-found+len(ids)-again, creates+len(ids))
	}
	return nil
}

// createNote posts a note, follows the redirect to its page, and reports
// whether the page showed it.
func createNote(client *http.Client, base, body string) (note, bool, error) {
	resp, err := client.Post(base+"/notes", "text/plain", strings.NewReader(body))
	if err != nil {
		return note{}, false, err
	}
	n, err := decode(resp)
	return n, err == nil && n.Found && n.Body == body, err
}

type app struct{ db *rwsplit.DB }

// note is the JSON a note's page returns.
type note struct {
	ID    int64  `json:"id"`
	Found bool   `json:"found"`
	Body  string `json:"body,omitempty"`
	Port  int    `json:"port"` // the server that answered the read
}

// create inserts a note on the primary, through the request's context
// (hence its session), and redirects to the note's page.
func (a app) create(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		http.Error(w, "reading the body", http.StatusBadRequest)
		return
	}
	id := newID()
	if _, err := a.db.ExecContext(r.Context(), "INSERT INTO notes (id, body) VALUES ($1, $2)", id, string(body)); err != nil {
		log.Printf("create: %v", err)
		http.Error(w, "could not save the note", http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/notes/%d", id), http.StatusSeeOther)
}

// show reads a note and tells which server answered: a replica that has
// applied the session's writes, or else the primary.
func (a app) show(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		http.Error(w, "bad id", http.StatusBadRequest)
		return
	}
	n := note{ID: id}
	var body sql.NullString
	err = a.db.QueryRowContext(r.Context(),
		"SELECT inet_server_port(), (SELECT body FROM notes WHERE id = $1)", id).Scan(&n.Port, &body)
	if err != nil {
		log.Printf("show: %v", err)
		http.Error(w, "could not read the note", http.StatusInternalServerError)
		return
	}
	n.Found, n.Body = body.Valid, body.String
	w.Header().Set("Content-Type", "application/json")
	if !n.Found {
		w.WriteHeader(http.StatusNotFound)
	}
	json.NewEncoder(w).Encode(n)
}

// newID returns a random positive id, so that runs against a table that
// already exists do not collide.
func newID() int64 {
	var b [8]byte
	rand.Read(b[:])
	return int64(binary.BigEndian.Uint64(b[:]) >> 12) // 52 bits: exact in JSON numbers too
}

func decode(resp *http.Response) (note, error) {
	defer resp.Body.Close()
	var n note
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return n, fmt.Errorf("%s %s: %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(&n); err != nil {
		return n, fmt.Errorf("%s: %w", resp.Request.URL.Path, err)
	}
	return n, nil
}

// ports maps a server port to the role of the node listening on it, as
// Stats names the nodes (host:port).
type ports map[int]string

func nodePorts(db *rwsplit.DB) ports {
	p := ports{}
	for _, n := range db.Stats().Nodes {
		if i := strings.LastIndexByte(n.Name, ':'); i >= 0 {
			if port, err := strconv.Atoi(n.Name[i+1:]); err == nil {
				p[port] = n.Role.String()
			}
		}
	}
	return p
}

func (p ports) role(port int) string {
	if r, ok := p[port]; ok {
		return r
	}
	return "an unknown node"
}

func (p ports) describe(n note, found bool) string {
	status := "found "
	if !found {
		status = "MISSED"
	}
	return fmt.Sprintf("%s served by %s (port %d)", status, p.role(n.Port), n.Port)
}
