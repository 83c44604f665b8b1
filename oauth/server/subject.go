package server

import "net/http"

// SessionSubject names the person signed in to alterhost in the browser r
// comes from, if any: pages outside this package (the Connect flow) act for
// that person.
func (s *Server) SessionSubject(r *http.Request) (string, bool) {
	sess, ok, err := s.session(r)
	if err != nil || !ok {
		return "", false
	}
	return sess.Subject, true
}
