//! sandbox: an example alterhost plugin in Rust for the built-in sandbox
//! provider (alterhost --dev), a port of examples/go/sandbox. It calls the
//! sandbox API as the signed-in person; the host adds the person's access
//! token to each request, so the plugin never sees it.
//!
//! Its outputs and error texts are byte for byte the Go example's, so the
//! two can be tested against each other. Build: see README.md.

use alter::{BoxError, Json, Request, Response};

/// The sandbox API's base URL, on a virtual host the host serves in-process.
const API: &str = "https://sandbox.alterhost.test/api/";

/// Makes one request to the sandbox API and returns its answer, which must
/// be a JSON object, compacted.
fn call(method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Vec<u8>, BoxError> {
    let mut req = Request::new(method, &format!("{}{}", API, path)).header("Accept", "application/json");
    if let Some(b) = body {
        req = req.header("Content-Type", "application/json").body(b);
    }
    // An alter_request error goes back as is ("code: message"): the host
    // shows a grant_not_found or scope_reauth_required with its Connect URL.
    let resp = req.send()?;
    if resp.status / 100 != 2 {
        return Err(api_error(&resp).into());
    }
    match alter::compact(&resp.body) {
        Ok(out) if out.first() == Some(&b'{') => Ok(out),
        _ => Err(format!("the sandbox API answered {} with something that is not a JSON object", resp.status).into()),
    }
}

/// Describes a refused API call from its status and OAuth error.
fn api_error(resp: &Response) -> String {
    let mut error = String::new();
    let mut description = String::new();
    // As Go's json.Unmarshal into a struct: names match case-insensitively,
    // the last string value wins, and values of other types are skipped.
    if let Ok(Json::Object(members)) = resp.json() {
        for (k, v) in &members {
            if let Json::String(s) = v {
                if go_fold_eq(k, "ERROR") {
                    error = s.clone();
                } else if go_fold_eq(k, "ERROR_DESCRIPTION") {
                    description = s.clone();
                }
            }
        }
    }
    let mut msg = format!("the sandbox API answered {}", resp.status);
    if !error.is_empty() {
        msg.push_str(&format!(": {}", error));
    }
    if !description.is_empty() {
        msg.push_str(&format!(" ({})", description));
    }
    if let Some(h) = resp.header("www-authenticate").filter(|h| !h.is_empty()) {
        msg.push_str(&format!("; WWW-Authenticate: {}", h));
    }
    msg
}

/// Compares a JSON member name with an upper-case ASCII field name as Go's
/// decoder does: by simple case folding, in which U+017F (long s) is an
/// S and U+212A (Kelvin sign) a K.
fn go_fold_eq(name: &str, upper: &str) -> bool {
    let folded = name.chars().map(|c| match c {
        '\u{17f}' => 'S',
        '\u{212a}' => 'K',
        c => c.to_ascii_uppercase(),
    });
    folded.eq(upper.chars())
}

#[no_mangle]
pub extern "C" fn whoami() -> i32 {
    alter::handle(|_| call("GET", "whoami", None))
}

#[no_mangle]
pub extern "C" fn list_notes() -> i32 {
    alter::handle(|_| call("GET", "notes", None))
}

#[no_mangle]
pub extern "C" fn add_note() -> i32 {
    alter::handle(|input| {
        let args = Json::parse(input).map_err(|e| format!("invalid arguments: {}", e))?;
        let mut text = String::new();
        if let Json::Object(members) = &args {
            for (k, v) in members {
                if let (true, Json::String(s)) = (go_fold_eq(k, "TEXT"), v) {
                    text = s.clone();
                }
            }
        }
        // Encoded as Go's json.Marshal encodes it, escapes and all.
        let body = Json::object(vec![("text", Json::String(text))]).to_string();
        call("POST", "notes", Some(body.into_bytes()))
    })
}
