package sandbox

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"
)

// maxNoteChars bounds one note; maxNotes bounds them all, oldest dropped.
const (
	maxNoteChars = 2000
	maxNotes     = 1000
)

// bearer returns the request's bearer token and whether one was sent.
func bearer(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// authenticate records the presented token and returns its scopes if it
// is valid and unexpired.
func (s *Sandbox) authenticate(r *http.Request) (scopes []string, seen, valid bool) {
	tok, seen := bearer(r)
	if !seen {
		return nil, false, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.seenSet[tok] && len(s.seen) < maxSeen {
		s.seenSet[tok] = true
		s.seen = append(s.seen, tok)
	}
	at, ok := s.access[tok]
	if !ok || !s.opts.Now().Before(at.expires) {
		return nil, true, false
	}
	if g := s.grants[at.grantID]; g == nil || g.revoked {
		return nil, true, false
	}
	return slices.Clone(at.scopes), true, true
}

// require checks the token for scope and writes the RFC 6750 error if it
// falls short.
func (s *Sandbox) require(w http.ResponseWriter, r *http.Request, scope string) bool {
	scopes, _, valid := s.authenticate(r)
	if !valid {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox", error="invalid_token", error_description="missing, unknown, expired or revoked access token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token"})
		return false
	}
	if !slices.Contains(scopes, scope) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sandbox", error="insufficient_scope", scope="`+scope+`"`)
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope", "scope": scope})
		return false
	}
	return true
}

// whoamiAnswer is GET /api/whoami's answer. It never fails, so a test can
// ask whether the host sent a token at all.
type whoamiAnswer struct {
	// Authenticated: a valid, unexpired access token arrived.
	Authenticated bool `json:"authenticated"`
	// TokenSeen: an Authorization bearer header arrived, valid or not.
	TokenSeen bool     `json:"token_seen"`
	Scopes    []string `json:"scopes"`
	// Account is "sandbox-user" when authenticated, else "".
	Account string `json:"account"`
}

func (s *Sandbox) whoami(w http.ResponseWriter, r *http.Request) {
	scopes, seen, valid := s.authenticate(r)
	a := whoamiAnswer{Authenticated: valid, TokenSeen: seen, Scopes: scopes}
	if a.Scopes == nil {
		a.Scopes = []string{}
	}
	if valid {
		a.Account = Account
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Sandbox) listNotes(w http.ResponseWriter, r *http.Request) {
	if !s.require(w, r, ScopeRead) {
		return
	}
	notes := s.Notes()
	if notes == nil {
		notes = []Note{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"notes": notes})
}

func (s *Sandbox) addNote(w http.ResponseWriter, r *http.Request) {
	if !s.require(w, r, ScopeWrite) {
		return
	}
	var in struct {
		Text string `json:"text"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request",
			"error_description": `send {"text": "..."}: ` + err.Error()})
		return
	}
	in.Text = strings.TrimSpace(in.Text)
	if in.Text == "" || utf8.RuneCountInString(in.Text) > maxNoteChars {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request",
			"error_description": "text must be 1 to 2000 characters"})
		return
	}
	s.mu.Lock()
	n := Note{ID: 1, Text: in.Text, CreatedAt: s.opts.Now().UTC()}
	if len(s.notes) > 0 {
		n.ID = s.notes[len(s.notes)-1].ID + 1
	}
	s.notes = append(s.notes, n)
	if len(s.notes) > maxNotes {
		s.notes = slices.Delete(s.notes, 0, len(s.notes)-maxNotes)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"note": n})
}
