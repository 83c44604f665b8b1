//! github: an example alterhost plugin in Rust that acts on the signed-in
//! person's GitHub account. `list_repos` turns its arguments into query
//! parameters and sums up the answer; `create_issue` sends a JSON body and
//! explains GitHub's refusals. The host adds the person's GitHub token to
//! each request; the plugin never holds it. Build: see README.md.

use alter::{BoxError, Json, Request, Response};

/// The REST API's base URL: the "api_base" setting, which the manifest
/// defaults to https://api.github.com.
fn api_base() -> String {
    match alter::setting("api_base") {
        Some(v) if !v.is_empty() => v,
        _ => "https://api.github.com".to_string(),
    }
}

/// A request to the GitHub REST API with the headers GitHub asks for.
fn github(method: &str, path: &str) -> Request {
    Request::new(method, &format!("{}{}", api_base(), path))
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .header("User-Agent", "alterhost-github-example")
}

/// GitHub's own explanation of a refusal: its "message", then the
/// "errors" list of a validation failure, if any.
fn github_message(resp: &Response) -> String {
    let v = match resp.json() {
        Ok(v) => v,
        Err(_) => return String::new(),
    };
    let mut msg = v["message"].as_str().unwrap_or("").to_string();
    if let Some(errors) = v["errors"].as_array() {
        let details: Vec<String> = errors
            .iter()
            .map(|e| match e {
                Json::String(s) => s.clone(),
                // {"resource":"Issue","field":"title","code":"missing_field"},
                // or a free-text "message" for code "custom".
                _ => match (e["message"].as_str(), e["field"].as_str(), e["code"].as_str()) {
                    (Some(m), _, _) => m.to_string(),
                    (None, Some(f), Some(c)) => format!("{} {}", f, c.replace('_', " ")),
                    (None, None, Some(c)) => c.replace('_', " "),
                    _ => e.to_string(),
                },
            })
            .collect();
        if !details.is_empty() {
            msg.push_str(&format!(" ({})", details.join("; ")));
        }
    }
    msg
}

/// An error for an unexpected status, in GitHub's words where it gave some.
fn refused(what: &str, resp: &Response) -> BoxError {
    let detail = github_message(resp);
    let mut msg = match resp.status {
        401 => format!("GitHub refused the credential while trying to {} (401)", what),
        403 if resp.header("x-ratelimit-remaining") == Some("0") => {
            format!("GitHub's rate limit is used up; try again after {} (Unix time)",
                resp.header("x-ratelimit-reset").unwrap_or("a while"))
        }
        s => format!("GitHub answered {} while trying to {}", s, what),
    };
    if !detail.is_empty() {
        msg.push_str(&format!(": {}", detail));
    }
    msg.into()
}

/// Checks an owner or repository name, so it cannot change the URL path.
fn path_segment(args: &Json, name: &str) -> Result<String, BoxError> {
    let s = args[name].as_str().unwrap_or("");
    let ok = !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 100
        && s.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.');
    if !ok {
        return Err(format!("{:?} is not a valid GitHub {} name", s, name).into());
    }
    Ok(s.to_string())
}

#[no_mangle]
pub extern "C" fn list_repos() -> i32 {
    alter::handle_json(|args| {
        let mut req = github("GET", "/user/repos");
        for name in ["visibility", "sort"] {
            if let Some(v) = args[name].as_str() {
                req = req.query(name, v);
            }
        }
        let per_page = args["per_page"].as_u64().unwrap_or(30).clamp(1, 100);
        req = req.query("per_page", &per_page.to_string());
        let resp = req.send()?;
        if resp.status != 200 {
            return Err(refused("list your repositories", &resp));
        }
        let repos = resp.json().map_err(|e| format!("GitHub's repository list is not JSON: {}", e))?;
        let repos = repos.as_array().ok_or("GitHub's repository list is not a list")?;
        let summary: Vec<Json> = repos
            .iter()
            .map(|r| {
                Json::object(vec![
                    ("full_name", r["full_name"].clone()),
                    ("private", Json::Bool(r["private"].as_bool().unwrap_or(false))),
                    ("description", r["description"].clone()),
                    ("html_url", r["html_url"].clone()),
                    ("default_branch", r["default_branch"].clone()),
                    ("stars", r["stargazers_count"].clone()),
                    ("updated_at", r["updated_at"].clone()),
                ])
            })
            .collect();
        alter::log_debug(&format!("list_repos: {} repositories", summary.len()));
        Ok(Json::object(vec![("count", summary.len().into()), ("repos", Json::Array(summary))]))
    })
}

#[no_mangle]
pub extern "C" fn create_issue() -> i32 {
    alter::handle_json(|args| {
        let owner = path_segment(args, "owner")?;
        let repo = path_segment(args, "repo")?;
        let title = args["title"].as_str().unwrap_or("");
        if title.trim().is_empty() {
            return Err("an issue needs a title".into());
        }
        let mut issue = Json::object(vec![("title", title.into())]);
        if let Some(body) = args["body"].as_str() {
            issue.insert("body", body.into());
        }
        let resp = github("POST", &format!("/repos/{}/{}/issues", owner, repo)).json(&issue).send()?;
        let what = format!("open an issue in {}/{}", owner, repo);
        match resp.status {
            201 => {}
            404 => {
                // GitHub says 404, not 403, for a private repository the
                // token may not see.
                return Err(format!(
                    "GitHub found no repository {}/{} that this account can see (404): {}",
                    owner,
                    repo,
                    github_message(&resp)
                )
                .into());
            }
            410 => return Err(format!("issues are turned off in {}/{} (410)", owner, repo).into()),
            422 => return Err(format!("GitHub refused the issue (422): {}", github_message(&resp)).into()),
            _ => return Err(refused(&what, &resp)),
        }
        let created = resp.json().map_err(|e| format!("GitHub's answer is not JSON: {}", e))?;
        Ok(Json::object(vec![
            ("number", created["number"].clone()),
            ("html_url", created["html_url"].clone()),
            ("title", created["title"].clone()),
            ("state", created["state"].clone()),
        ]))
    })
}
