package rwsplit

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// newHTTPApp serves, behind db's session middleware:
//
//	POST /write           an Exec, then "ok"
//	POST /write-silent    an Exec, and no body (the implicit 200)
//	POST /write-redirect  an Exec, then a 303 to /read
//	GET  /read            the node that served a read
//
// and returns the server's URL.
func newHTTPApp(t *testing.T, db *DB, opts HTTPSessionOptions) string {
	t.Helper()
	mux := http.NewServeMux()
	exec := func(w http.ResponseWriter, r *http.Request) bool {
		if _, err := db.ExecContext(r.Context(), "INSERT INTO notes VALUES (1)"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return false
		}
		return true
	}
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		if exec(w, r) {
			io.WriteString(w, "ok")
		}
	})
	mux.HandleFunc("POST /write-silent", func(w http.ResponseWriter, r *http.Request) { exec(w, r) })
	mux.HandleFunc("POST /write-redirect", func(w http.ResponseWriter, r *http.Request) {
		if exec(w, r) {
			http.Redirect(w, r, "/read", http.StatusSeeOther)
		}
	})
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		var node string
		if err := db.QueryRowContext(r.Context(), "SELECT node FROM notes").Scan(&node); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, node)
	})
	srv := httptest.NewServer(db.SessionMiddleware(opts)(mux))
	t.Cleanup(srv.Close)
	return srv.URL
}

// httpResult is what a test request got back.
type httpResult struct {
	status int
	body   string
	header string       // the Rwsplit-Session response header
	cookie *http.Cookie // the rwsplit_session cookie set, or nil
	resp   *http.Response
}

// do sends a request without following redirects; token, if not empty,
// goes in the cookie or, with inHeader, in the Rwsplit-Session header.
func do(t *testing.T, method, url, token string, inHeader bool) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		if inHeader {
			req.Header.Set("Rwsplit-Session", token)
		} else {
			req.AddCookie(&http.Cookie{Name: "rwsplit_session", Value: token})
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	res := httpResult{status: resp.StatusCode, body: string(body), header: resp.Header.Get("Rwsplit-Session"), resp: resp}
	for _, c := range resp.Cookies() {
		if c.Name == "rwsplit_session" {
			res.cookie = c
		}
	}
	return res
}

// checkToken fails unless the response carries the same valid window token
// in its cookie and header.
func checkToken(t *testing.T, res httpResult) string {
	t.Helper()
	if res.cookie == nil {
		t.Fatalf("no session cookie; headers %v", res.resp.Header)
	}
	if res.header != res.cookie.Value {
		t.Fatalf("header token %q, cookie token %q: want the same", res.header, res.cookie.Value)
	}
	s, err := ResumeSession(res.cookie.Value)
	if err != nil {
		t.Fatalf("ResumeSession(cookie): %v", err)
	}
	if s.lastWrite.IsZero() {
		t.Fatalf("token %q carries no write", res.cookie.Value)
	}
	return res.cookie.Value
}

func newHTTPCluster(t *testing.T, opts ...Option) *DB {
	t.Helper()
	// The fake driver has no replication positions: sessions read from
	// the primary for WithSessionWindow after a write.
	return newCluster(t, 2, append([]Option{WithDialect("generic")}, opts...)...).db
}

func TestSessionMiddlewareWriteSetsToken(t *testing.T) {
	db := newHTTPCluster(t)
	url := newHTTPApp(t, db, HTTPSessionOptions{})
	for _, path := range []string{"/write", "/write-silent"} {
		t.Run(path, func(t *testing.T) {
			res := do(t, "POST", url+path, "", false)
			if res.status != http.StatusOK {
				t.Fatalf("status %d %q", res.status, res.body)
			}
			checkToken(t, res)
			c := res.cookie
			if !c.HttpOnly || c.Path != "/" || c.MaxAge != 3600 || c.SameSite != http.SameSiteLaxMode || c.Secure || c.Domain != "" {
				t.Errorf("cookie %q: want HttpOnly, Path=/, Max-Age=3600, SameSite=Lax, not Secure, no Domain", c.Raw)
			}
		})
	}
}

func TestSessionMiddlewareReadSetsNothing(t *testing.T) {
	db := newHTTPCluster(t)
	url := newHTTPApp(t, db, HTTPSessionOptions{})
	res := do(t, "GET", url+"/read", "", false)
	if res.status != http.StatusOK || res.cookie != nil || res.header != "" {
		t.Fatalf("a read got status %d, cookie %v, header %q; want 200 and no token", res.status, res.cookie, res.header)
	}
	if res.body == "p" {
		t.Errorf("a read without a session token served by the primary")
	}
}

func TestSessionMiddlewareTokenReadsFromPrimary(t *testing.T) {
	db := newHTTPCluster(t)
	url := newHTTPApp(t, db, HTTPSessionOptions{})
	token := checkToken(t, do(t, "POST", url+"/write", "", false))
	for _, inHeader := range []bool{false, true} {
		t.Run(fmt.Sprintf("inHeader=%v", inHeader), func(t *testing.T) {
			for range 10 {
				res := do(t, "GET", url+"/read", token, inHeader)
				if res.body != "p" {
					t.Fatalf("read with the writer's token served by %q, want the primary", res.body)
				}
				if res.cookie != nil || res.header != "" {
					t.Fatalf("a read set a token: cookie %v, header %q", res.cookie, res.header)
				}
			}
		})
	}
	// Without the token, reads go to the replicas.
	if node := do(t, "GET", url+"/read", "", false).body; node == "p" {
		t.Errorf("read without a token served by the primary")
	}
}

func TestSessionMiddlewareHeaderPreferredOverCookie(t *testing.T) {
	db := newHTTPCluster(t)
	url := newHTTPApp(t, db, HTTPSessionOptions{})
	token := checkToken(t, do(t, "POST", url+"/write", "", false))
	old := NewSession()
	old.lastWrite = time.Now().Add(-time.Hour) // long out of the window
	req, _ := http.NewRequest("GET", url+"/read", nil)
	req.Header.Set("Rwsplit-Session", token)
	req.AddCookie(&http.Cookie{Name: "rwsplit_session", Value: old.Token()})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "p" {
		t.Errorf("read served by %q; want the primary, as the header's token asks", body)
	}
}

func TestSessionMiddlewareBadToken(t *testing.T) {
	db := newHTTPCluster(t)
	url := newHTTPApp(t, db, HTTPSessionOptions{})
	valid := checkToken(t, do(t, "POST", url+"/write", "", false))
	bad := map[string]string{
		"garbage":     "not a token at all!",
		"truncated":   valid[:len(valid)-3],
		"header only": valid[:3],
		"version 9":   "CQAA",
		"oversized":   strings.Repeat("A", 9000),
		"bad base64":  "%%%%",
	}
	for name, token := range bad {
		for _, inHeader := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/inHeader=%v", name, inHeader), func(t *testing.T) {
				if _, err := ResumeSession(token); err == nil {
					t.Fatalf("ResumeSession(%q) accepted it", token)
				}
				res := do(t, "GET", url+"/read", token, inHeader)
				if res.status != http.StatusOK || res.body == "p" || res.cookie != nil || res.header != "" {
					t.Fatalf("read: status %d, served by %q, cookie %v, header %q; want 200 from a replica, no token",
						res.status, res.body, res.cookie, res.header)
				}
				res = do(t, "POST", url+"/write", token, inHeader)
				if res.status != http.StatusOK {
					t.Fatalf("write: status %d %q", res.status, res.body)
				}
				checkToken(t, res)
			})
		}
	}
}

func TestSessionMiddlewareDropsForeignTokenBeforeHandler(t *testing.T) {
	db := newHTTPCluster(t, WithSessionKey([]byte("0123456789abcdef0123456789abcdef")))
	foreign := NewSession()
	foreign.markWrite(&DB{}) // an unsigned token, within the window
	var rejected uint64
	h := db.SessionMiddleware(HTTPSessionOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rejected = db.Stats().TokensRejected
		var node string
		if err := db.QueryRowContext(r.Context(), "SELECT 1").Scan(&node); err != nil {
			t.Errorf("read: %v", err)
		}
		io.WriteString(w, node)
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Rwsplit-Session", foreign.Token())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rejected != 1 {
		t.Errorf("TokensRejected %d when the handler ran, want 1", rejected)
	}
	if rec.Body.String() == "p" {
		t.Errorf("a read with a rejected token served by the primary")
	}
}

func TestSessionMiddlewareRedirectAfterWrite(t *testing.T) {
	db := newHTTPCluster(t)
	url := newHTTPApp(t, db, HTTPSessionOptions{})
	res := do(t, "POST", url+"/write-redirect", "", false)
	if res.status != http.StatusSeeOther || res.resp.Header.Get("Location") != "/read" {
		t.Fatalf("status %d, Location %q; want 303 to /read", res.status, res.resp.Header.Get("Location"))
	}
	token := checkToken(t, res)
	if node := do(t, "GET", url+"/read", token, false).body; node != "p" {
		t.Errorf("read after the redirect served by %q, want the primary", node)
	}

	// A browser-like client, with a cookie jar, following the redirect.
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Jar: jar}
	resp, err := client.Post(url+"/write-redirect", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "p" {
		t.Errorf("followed redirect: status %d, served by %q; want 200 from the primary", resp.StatusCode, body)
	}
}

func TestSessionMiddlewareFlush(t *testing.T) {
	db := newHTTPCluster(t)
	mw := db.SessionMiddleware(HTTPSessionOptions{})

	t.Run("recorder", func(t *testing.T) {
		rec := httptest.NewRecorder()
		var flushErr error
		var isFlusher bool
		h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, isFlusher = w.(http.Flusher)
			if _, err := db.ExecContext(r.Context(), "INSERT INTO notes VALUES (1)"); err != nil {
				t.Errorf("Exec: %v", err)
			}
			flushErr = http.NewResponseController(w).Flush()
			// Headers are out: what the handler sets now is not sent.
			w.Header().Set("Late", "1")
			io.WriteString(w, "body")
		}))
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/", nil))
		if !isFlusher {
			t.Errorf("the wrapped writer is not an http.Flusher over one that is")
		}
		if flushErr != nil || !rec.Flushed {
			t.Fatalf("ResponseController.Flush: %v, flushed %v", flushErr, rec.Flushed)
		}
		resp := rec.Result()
		if resp.Header.Get("Late") != "" {
			t.Fatalf("recorder did not snapshot the headers at the flush")
		}
		if resp.Header.Get("Rwsplit-Session") == "" || len(resp.Cookies()) != 1 {
			t.Errorf("flushed headers %v: want the session header and cookie", resp.Header)
		}
	})

	t.Run("server", func(t *testing.T) {
		release := make(chan struct{})
		deadlineErr := make(chan error, 1)
		srv := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := db.ExecContext(r.Context(), "INSERT INTO notes VALUES (1)"); err != nil {
				t.Errorf("Exec: %v", err)
			}
			rc := http.NewResponseController(w)
			deadlineErr <- rc.SetWriteDeadline(time.Now().Add(time.Minute)) // through Unwrap
			io.WriteString(w, "first ")
			if err := rc.Flush(); err != nil {
				t.Errorf("Flush: %v", err)
			}
			<-release
			io.WriteString(w, "second")
		})))
		defer srv.Close()
		resp, err := http.Post(srv.URL, "text/plain", nil)
		close(release)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// The headers arrived while the handler was blocked: the token
		// went out with the flush.
		res := httpResult{header: resp.Header.Get("Rwsplit-Session"), resp: resp}
		for _, c := range resp.Cookies() {
			if c.Name == "rwsplit_session" {
				res.cookie = c
			}
		}
		checkToken(t, res)
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "first second" {
			t.Errorf("body %q", body)
		}
		if err := <-deadlineErr; err != nil {
			t.Errorf("ResponseController.SetWriteDeadline: %v", err)
		}
	})

	t.Run("not a flusher", func(t *testing.T) {
		var isFlusher bool
		var flushErr error
		h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, isFlusher = w.(http.Flusher)
			flushErr = http.NewResponseController(w).Flush()
		}))
		h.ServeHTTP(plainWriter{httptest.NewRecorder()}, httptest.NewRequest("GET", "/", nil))
		if isFlusher {
			t.Errorf("the wrapped writer is an http.Flusher over one that is not")
		}
		if !errors.Is(flushErr, http.ErrNotSupported) {
			t.Errorf("ResponseController.Flush: %v, want http.ErrNotSupported", flushErr)
		}
	})
}

// plainWriter hides every method but http.ResponseWriter's.
type plainWriter struct{ http.ResponseWriter }

func TestSessionMiddlewareOptions(t *testing.T) {
	db := newHTTPCluster(t)
	write := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := db.ExecContext(r.Context(), "INSERT INTO notes VALUES (1)"); err != nil {
			t.Errorf("Exec: %v", err)
		}
	})
	serve := func(opts HTTPSessionOptions, req *http.Request) *http.Response {
		rec := httptest.NewRecorder()
		db.SessionMiddleware(opts)(write).ServeHTTP(rec, req)
		return rec.Result()
	}

	opts := HTTPSessionOptions{
		CookieName: "sess", Header: "X-Sess", Path: "/app", Domain: "example.com",
		MaxAge: 90 * time.Minute, Secure: true, SameSite: http.SameSiteStrictMode,
	}
	resp := serve(opts, httptest.NewRequest("POST", "/app/x", nil))
	cs := resp.Cookies()
	if len(cs) != 1 {
		t.Fatalf("cookies %v, want one", cs)
	}
	c := cs[0]
	if c.Name != "sess" || c.Path != "/app" || c.Domain != "example.com" || c.MaxAge != 5400 || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie %q does not follow %+v", c.Raw, opts)
	}
	if resp.Header.Get("X-Sess") != c.Value || resp.Header.Get("Rwsplit-Session") != "" {
		t.Errorf("headers %v: want the token in X-Sess only", resp.Header)
	}

	// The token comes back in the custom header.
	req := httptest.NewRequest("POST", "/app/x", nil)
	req.Header.Set("X-Sess", c.Value)
	var node string
	h := db.SessionMiddleware(opts)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		node = served(t, r.Context(), db, "SELECT 1")
	}))
	h.ServeHTTP(httptest.NewRecorder(), req)
	if node != "p" {
		t.Errorf("read with the token in X-Sess served by %q, want the primary", node)
	}

	resp = serve(HTTPSessionOptions{CookieName: "-"}, httptest.NewRequest("POST", "/", nil))
	if len(resp.Cookies()) != 0 || resp.Header.Get("Rwsplit-Session") == "" {
		t.Errorf(`CookieName "-": cookies %v, header %q; want the header alone`, resp.Cookies(), resp.Header.Get("Rwsplit-Session"))
	}
	resp = serve(HTTPSessionOptions{Header: "-"}, httptest.NewRequest("POST", "/", nil))
	if len(resp.Cookies()) != 1 || resp.Header.Get("Rwsplit-Session") != "" {
		t.Errorf(`Header "-": cookies %v, header %q; want the cookie alone`, resp.Cookies(), resp.Header.Get("Rwsplit-Session"))
	}
	resp = serve(HTTPSessionOptions{MaxAge: -1}, httptest.NewRequest("POST", "/", nil))
	if cs := resp.Cookies(); len(cs) != 1 || cs[0].MaxAge != 0 || strings.Contains(cs[0].Raw, "Max-Age") {
		t.Errorf("MaxAge -1: cookies %v; want one without Max-Age", cs)
	}
}
