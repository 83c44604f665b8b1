//go:build wasip1

// Command github is an example alterhost plugin in Go that acts on the
// signed-in person's GitHub account: list_repos turns its arguments into
// query parameters and sums up the answer; create_issue sends a JSON body
// and explains GitHub's refusals. The host adds the person's GitHub token
// to each request; the plugin never holds it.
//
// It is the reference for the same example in C, Rust and AssemblyScript:
// internal/pluginbuild's differential test holds them to its answers.
//
// Build: alterhost plugin build examples/go/github, or see README.md.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	alter "github.com/alterhost/alterhost/abi/go"
)

// main is never called: the host calls the exported tools.
func main() {}

// apiBase is the REST API's base URL: the "api_base" setting, which the
// manifest defaults to https://api.github.com.
func apiBase() string {
	if v, ok := alter.Setting("api_base"); ok && v != "" {
		return v
	}
	return "https://api.github.com"
}

// github starts a request to the GitHub REST API with the headers GitHub
// asks for.
func github(method, path string) alter.Request {
	return alter.Request{Method: method, URL: apiBase() + path, Headers: map[string]string{
		"Accept":               "application/vnd.github+json",
		"X-GitHub-Api-Version": "2022-11-28",
		"User-Agent":           "alterhost-github-example",
	}}
}

// decode reads JSON keeping numbers as GitHub wrote them.
func decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return v, nil
}

// str returns v as a string, and whether it is one.
func str(v any) (string, bool) { s, ok := v.(string); return s, ok }

// member returns the member key of v, or nil when v is not an object or
// has no such member.
func member(v any, key string) any {
	if m, ok := v.(map[string]any); ok {
		return m[key]
	}
	return nil
}

// githubMessage is GitHub's own explanation of a refusal: its "message",
// then the "errors" list of a validation failure, if any.
func githubMessage(resp *alter.Response) string {
	v, err := decode(resp.Body)
	if err != nil {
		return ""
	}
	msg, _ := str(member(v, "message"))
	errs, _ := member(v, "errors").([]any)
	if len(errs) == 0 {
		return msg
	}
	details := make([]string, 0, len(errs))
	for _, e := range errs {
		if s, ok := str(e); ok {
			details = append(details, s)
			continue
		}
		// {"resource":"Issue","field":"title","code":"missing_field"}, or a
		// free-text "message" for code "custom".
		m, mok := str(member(e, "message"))
		f, fok := str(member(e, "field"))
		c, cok := str(member(e, "code"))
		switch {
		case mok:
			details = append(details, m)
		case fok && cok:
			details = append(details, f+" "+strings.ReplaceAll(c, "_", " "))
		case cok:
			details = append(details, strings.ReplaceAll(c, "_", " "))
		default:
			b, _ := json.Marshal(e)
			details = append(details, string(b))
		}
	}
	return msg + " (" + strings.Join(details, "; ") + ")"
}

// refused explains an unexpected status, in GitHub's words where it gave
// some.
func refused(what string, resp *alter.Response) error {
	var msg string
	switch {
	case resp.Status == 401:
		msg = fmt.Sprintf("GitHub refused the credential while trying to %s (401)", what)
	case resp.Status == 403 && resp.Headers["x-ratelimit-remaining"] == "0":
		reset := resp.Headers["x-ratelimit-reset"]
		if reset == "" {
			reset = "a while"
		}
		msg = fmt.Sprintf("GitHub's rate limit is used up; try again after %s (Unix time)", reset)
	default:
		msg = fmt.Sprintf("GitHub answered %d while trying to %s", resp.Status, what)
	}
	if detail := githubMessage(resp); detail != "" {
		msg += ": " + detail
	}
	return fmt.Errorf("%s", msg)
}

// pathSegment checks an owner or repository name, so it cannot change the
// URL path.
func pathSegment(args map[string]any, name string) (string, error) {
	s, _ := str(args[name])
	ok := s != "" && s != "." && s != ".." && len(s) <= 100
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
	}
	if !ok {
		return "", fmt.Errorf("%s is not a valid GitHub %s name", strconv.Quote(s), name)
	}
	return s, nil
}

// arguments decodes the tool's arguments, keeping numbers as written.
func arguments(in []byte) (map[string]any, error) {
	if len(in) == 0 {
		return map[string]any{}, nil
	}
	v, err := decode(in)
	m, ok := v.(map[string]any)
	if err != nil || !ok {
		return nil, fmt.Errorf("invalid arguments: not a JSON object")
	}
	return m, nil
}

// repo is one repository of list_repos' answer. Values are copied as
// GitHub sent them (null when missing), except private.
type repo struct {
	FullName      any  `json:"full_name"`
	Private       bool `json:"private"`
	Description   any  `json:"description"`
	HTMLURL       any  `json:"html_url"`
	DefaultBranch any  `json:"default_branch"`
	Stars         any  `json:"stars"`
	UpdatedAt     any  `json:"updated_at"`
}

type repoList struct {
	Count int    `json:"count"`
	Repos []repo `json:"repos"`
}

//go:wasmexport list_repos
func listRepos() int32 {
	return alter.Handle(func(in []byte) ([]byte, error) {
		args, err := arguments(in)
		if err != nil {
			return nil, err
		}
		req := github("GET", "/user/repos")
		req.Query = map[string][]string{}
		for _, name := range []string{"visibility", "sort"} {
			if v, ok := str(args[name]); ok {
				req.Query[name] = []string{v}
			}
		}
		perPage := int64(30)
		if n, ok := args["per_page"].(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				perPage = min(max(i, 1), 100)
			}
		}
		req.Query["per_page"] = []string{strconv.FormatInt(perPage, 10)}
		resp, err := alter.Do(req)
		if err != nil {
			return nil, err // a typed *alter.Error: grant_not_found carries the Connect URL
		}
		if resp.Status != 200 {
			return nil, refused("list your repositories", resp)
		}
		v, err := decode(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("GitHub's repository list is not JSON: %v", err)
		}
		list, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("GitHub's repository list is not a list")
		}
		out := repoList{Count: len(list), Repos: make([]repo, 0, len(list))}
		for _, r := range list {
			private, _ := member(r, "private").(bool)
			out.Repos = append(out.Repos, repo{
				FullName: member(r, "full_name"), Private: private, Description: member(r, "description"),
				HTMLURL: member(r, "html_url"), DefaultBranch: member(r, "default_branch"),
				Stars: member(r, "stargazers_count"), UpdatedAt: member(r, "updated_at"),
			})
		}
		alter.Log(alter.LevelDebug, fmt.Sprintf("list_repos: %d repositories", len(out.Repos)))
		return json.Marshal(out)
	})
}

type newIssue struct {
	Title string  `json:"title"`
	Body  *string `json:"body,omitempty"`
}

type createdIssue struct {
	Number  any `json:"number"`
	HTMLURL any `json:"html_url"`
	Title   any `json:"title"`
	State   any `json:"state"`
}

//go:wasmexport create_issue
func createIssue() int32 {
	return alter.Handle(func(in []byte) ([]byte, error) {
		args, err := arguments(in)
		if err != nil {
			return nil, err
		}
		owner, err := pathSegment(args, "owner")
		if err != nil {
			return nil, err
		}
		name, err := pathSegment(args, "repo")
		if err != nil {
			return nil, err
		}
		title, _ := str(args["title"])
		if strings.TrimSpace(title) == "" {
			return nil, fmt.Errorf("an issue needs a title")
		}
		issue := newIssue{Title: title}
		if b, ok := str(args["body"]); ok {
			issue.Body = &b
		}
		body, err := json.Marshal(issue)
		if err != nil {
			return nil, err
		}
		req := github("POST", "/repos/"+owner+"/"+name+"/issues")
		req.Headers["Content-Type"] = "application/json"
		req.Body = body
		resp, err := alter.Do(req)
		if err != nil {
			return nil, err
		}
		where := owner + "/" + name
		switch resp.Status {
		case 201:
		case 404:
			// GitHub says 404, not 403, for a private repository the token
			// may not see.
			return nil, fmt.Errorf("GitHub found no repository %s that this account can see (404): %s", where, githubMessage(resp))
		case 410:
			return nil, fmt.Errorf("issues are turned off in %s (410)", where)
		case 422:
			return nil, fmt.Errorf("GitHub refused the issue (422): %s", githubMessage(resp))
		default:
			return nil, refused("open an issue in "+where, resp)
		}
		v, err := decode(resp.Body)
		if err != nil {
			return nil, fmt.Errorf("GitHub's answer is not JSON: %v", err)
		}
		return json.Marshal(createdIssue{Number: member(v, "number"), HTMLURL: member(v, "html_url"),
			Title: member(v, "title"), State: member(v, "state")})
	})
}
