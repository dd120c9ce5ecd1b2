package rwsplit

import (
	"net/http"
	"time"
)

// HTTPSessionOptions configures [DB.SessionMiddleware]. The zero value is
// usable: a cookie named "rwsplit_session" with Path "/", a lifetime of
// one hour, HttpOnly and SameSite=Lax, and the "Rwsplit-Session" header.
type HTTPSessionOptions struct {
	// CookieName is the cookie carrying the token; default
	// "rwsplit_session"; "-" disables the cookie.
	CookieName string
	// Header is the request and response header carrying the token;
	// default "Rwsplit-Session"; "-" disables it. A token in the request
	// header is preferred over one in the cookie.
	Header string
	// Path is the cookie's Path; default "/".
	Path string
	// Domain is the cookie's Domain; default none (the request's host).
	Domain string
	// MaxAge is the cookie's lifetime; default 1h; negative: no Max-Age,
	// the cookie lasts the browser session.
	MaxAge time.Duration
	// Secure sets the cookie's Secure attribute.
	Secure bool
	// SameSite is the cookie's SameSite attribute; default
	// http.SameSiteLaxMode; http.SameSiteDefaultMode omits it.
	SameSite http.SameSite
}

// SessionMiddleware returns middleware that gives each request a [Session]
// in its context ([WithSession]), so that the handler's calls made with
// r.Context() read their own writes and those of the client's earlier
// requests. It works with any http.Handler router.
//
// The session is resumed ([ResumeSession]) from the request's header,
// preferred, or cookie; a missing, malformed or rejected token (see
// [ResumeSession]) gives a new session and never fails the request. When
// the handler writes through the session, the updated [Session.Token] is
// set as the cookie (HttpOnly) and the response header as the response
// headers go out: at the handler's first Write, WriteHeader or Flush, or
// when it returns without writing. A write made after that point is not
// carried to the client's next request.
//
// The ResponseWriter the handler gets supports [http.ResponseController]
// (it has Unwrap) and http.Flusher when the underlying writer does.
func (db *DB) SessionMiddleware(opts HTTPSessionOptions) func(http.Handler) http.Handler {
	if opts.CookieName == "" {
		opts.CookieName = "rwsplit_session"
	}
	if opts.Header == "" {
		opts.Header = "Rwsplit-Session"
	}
	if opts.Path == "" {
		opts.Path = "/"
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = time.Hour
	}
	if opts.SameSite == 0 {
		opts.SameSite = http.SameSiteLaxMode
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := db.requestSession(r, &opts)
			sw := &sessionWriter{ResponseWriter: w, opts: &opts, s: s, before: s.wrote()}
			var out http.ResponseWriter = sw
			if _, ok := w.(http.Flusher); ok {
				out = sessionFlusher{sw}
			}
			next.ServeHTTP(out, r.WithContext(WithSession(r.Context(), s)))
			// Headers not sent yet: net/http sends them, with these, in
			// the implicit 200 when the handler wrote nothing.
			sw.setToken()
		})
	}
}

// requestSession resumes the session of r's header or cookie, checked
// against db, or returns a new one.
func (db *DB) requestSession(r *http.Request, opts *HTTPSessionOptions) *Session {
	var tokens [2]string
	if opts.Header != "-" {
		tokens[0] = r.Header.Get(opts.Header)
	}
	if opts.CookieName != "-" {
		if c, err := r.Cookie(opts.CookieName); err == nil {
			tokens[1] = c.Value
		}
	}
	for _, t := range tokens {
		if t == "" {
			continue
		}
		s, err := ResumeSession(t)
		if err != nil {
			db.cfg.logger.Debug("rwsplit: session token ignored", "err", err)
			db.counts.tokensRejected.Add(1)
			db.emit(TokenRejected{Reason: errorText(err)})
			continue
		}
		db.adopt(r.Context(), s)
		return s
	}
	return NewSession()
}

// sessionWriter sets the session's token in the response headers before
// they go out, if the request wrote through the session.
type sessionWriter struct {
	http.ResponseWriter
	opts   *HTTPSessionOptions
	s      *Session
	before uint64 // s.wrote() when the request began
	sent   bool   // the headers were sent, or the token set
}

// setToken sets the cookie and header to the session's token, once, if
// the session recorded a write during the request.
func (w *sessionWriter) setToken() {
	if w.sent {
		return
	}
	w.sent = true
	if w.s.wrote() == w.before {
		return
	}
	token := w.s.Token()
	if w.opts.CookieName != "-" {
		c := &http.Cookie{
			Name:     w.opts.CookieName,
			Value:    token,
			Path:     w.opts.Path,
			Domain:   w.opts.Domain,
			Secure:   w.opts.Secure,
			HttpOnly: true,
			SameSite: w.opts.SameSite,
		}
		if w.opts.MaxAge > 0 {
			c.MaxAge = max(1, int(w.opts.MaxAge/time.Second))
		}
		http.SetCookie(w.ResponseWriter, c)
	}
	if w.opts.Header != "-" {
		w.Header().Set(w.opts.Header, token)
	}
}

func (w *sessionWriter) WriteHeader(code int) {
	// Informational responses (103 Early Hints, ...) come before the
	// final headers, except 101, after which none come.
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.setToken()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *sessionWriter) Write(b []byte) (int, error) {
	w.setToken()
	return w.ResponseWriter.Write(b)
}

// FlushError is what http.ResponseController's Flush calls: the token
// goes out with the headers the flush sends.
func (w *sessionWriter) FlushError() error {
	w.setToken()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the underlying ResponseWriter, for
// http.ResponseController.
func (w *sessionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// sessionFlusher is a sessionWriter over an http.Flusher.
type sessionFlusher struct{ *sessionWriter }

func (w sessionFlusher) Flush() { w.FlushError() }
