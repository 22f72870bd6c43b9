package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"github.com/medmesh/medmesh/internal/expiring"
	"github.com/medmesh/medmesh/node/imaging"
)

// Bounds of what the console keeps in memory: a flood of `medmesh ui`
// calls or sign-ins evicts the oldest, it does not grow the daemon.
const (
	maxLogins   = 16
	maxSessions = 64
	maxOpened   = 8 // studies a session keeps open
	openedTTL   = 15 * time.Minute
)

// secret returns 256 random bits, base64url.
func secret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// digest is what the console keeps of a secret: a leaked heap dump holds
// no usable code or cookie.
func digest(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// session is one signed-in browser.
type session struct {
	csrf    string
	created time.Time

	mu       sync.Mutex
	lastSeen time.Time
	flash    []flash                                // messages for the next page (one-shot)
	opened   *expiring.Map[string, *imaging.Opened] // studies opened by a read, by record ID
}

type flash struct {
	Kind string // "ok" or "error"
	Text string
}

// opened holds the studies this session opened (a read the ledger has
// recorded), so a study's page and thumbnails need no second read.
func (s *session) addFlash(kind, text string) {
	s.mu.Lock()
	s.flash = append(s.flash, flash{kind, text})
	s.mu.Unlock()
}

func (s *session) takeFlash() []flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flash
	s.flash = nil
	return f
}

func (s *session) keepOpened(id string, o *imaging.Opened, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opened == nil {
		s.opened = expiring.New[string, *imaging.Opened](openedTTL, maxOpened)
	}
	s.opened.Put(id, o, now)
}

func (s *session) openedStudy(id string, now time.Time) (*imaging.Opened, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opened == nil {
		return nil, false
	}
	return s.opened.Get(id, now)
}

// sessions holds the sign-in codes and sessions.
type sessions struct {
	now                         func() time.Time
	loginTTL, idleTTL, lifetime time.Duration

	mu     sync.Mutex
	logins map[[32]byte]time.Time // code digest -> expiry
	live   map[[32]byte]*session  // cookie digest -> session
}

func newSessions(now func() time.Time, loginTTL, idleTTL, lifetime time.Duration) *sessions {
	return &sessions{now: now, loginTTL: loginTTL, idleTTL: idleTTL, lifetime: lifetime,
		logins: map[[32]byte]time.Time{}, live: map[[32]byte]*session{}}
}

// newLogin mints a sign-in code.
func (ss *sessions) newLogin() (code string, expires time.Time) {
	now := ss.now()
	code, expires = secret(), now.Add(ss.loginTTL)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, exp := range ss.logins {
		if !now.Before(exp) {
			delete(ss.logins, k)
		}
	}
	if len(ss.logins) >= maxLogins {
		var oldest [32]byte
		var first time.Time
		for k, exp := range ss.logins {
			if first.IsZero() || exp.Before(first) {
				oldest, first = k, exp
			}
		}
		delete(ss.logins, oldest)
	}
	ss.logins[digest(code)] = expires
	return code, expires
}

// redeem uses a sign-in code up (valid or not, it works at most once) and
// returns a new session and its cookie value.
func (ss *sessions) redeem(code string) (cookie string, s *session, ok bool) {
	now := ss.now()
	d := digest(code)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	exp, found := ss.logins[d]
	delete(ss.logins, d)
	if !found || !now.Before(exp) {
		return "", nil, false
	}
	ss.sweepLocked(now)
	if len(ss.live) >= maxSessions {
		var oldest [32]byte
		var first time.Time
		for k, s := range ss.live {
			if first.IsZero() || s.created.Before(first) {
				oldest, first = k, s.created
			}
		}
		delete(ss.live, oldest)
	}
	cookie = secret()
	s = &session{csrf: secret(), created: now, lastSeen: now}
	ss.live[digest(cookie)] = s
	return cookie, s, true
}

func (ss *sessions) sweepLocked(now time.Time) {
	for k, s := range ss.live {
		if ss.expired(s, now) {
			delete(ss.live, k)
		}
	}
}

func (ss *sessions) expired(s *session, now time.Time) bool {
	s.mu.Lock()
	last := s.lastSeen
	s.mu.Unlock()
	return now.Sub(last) > ss.idleTTL || now.Sub(s.created) > ss.lifetime
}

// lookup returns the live session of a cookie value and marks it used.
func (ss *sessions) lookup(cookie string) (*session, bool) {
	if cookie == "" {
		return nil, false
	}
	now := ss.now()
	d := digest(cookie)
	ss.mu.Lock()
	s, ok := ss.live[d]
	if ok && ss.expired(s, now) {
		delete(ss.live, d)
		ok = false
	}
	ss.mu.Unlock()
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	s.lastSeen = now
	s.mu.Unlock()
	return s, true
}

// end signs a session out.
func (ss *sessions) end(cookie string) {
	ss.mu.Lock()
	delete(ss.live, digest(cookie))
	ss.mu.Unlock()
}

// checkCSRF compares a request's CSRF token with the session's, in
// constant time.
func (s *session) checkCSRF(r *http.Request, formValue string) bool {
	tok := r.Header.Get("X-CSRF-Token")
	if tok == "" {
		tok = formValue
	}
	return tok != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.csrf)) == 1
}
