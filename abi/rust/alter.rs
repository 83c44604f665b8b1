//! alter: the guest side of alterhost's ABI alter/v1 for Rust plugins.
//!
//! One file, no dependencies beyond `std`, written for the `rustc` Debian
//! ships (1.63 in bookworm), so a plugin builds without cargo or crates. A
//! plugin is a `cdylib` for `wasm32-unknown-unknown`; the module it makes
//! imports only the Extism kernel (`extism:host/env`) and the host's
//! `alter_request` (`extism:host/user`), no WASI at all.
//!
//! Build (what `internal/pluginbuild` runs; see README.md beside this file):
//!
//! ```text
//! rustc --edition 2021 --crate-type rlib --crate-name alter --target wasm32-unknown-unknown \
//!       -C opt-level=s -C panic=abort -C linker-plugin-lto -o libalter.rlib abi/rust/alter.rs
//! rustc --edition 2021 --crate-type cdylib --crate-name plugin --target wasm32-unknown-unknown \
//!       -C opt-level=s -C panic=abort -C lto -C codegen-units=1 -C strip=symbols \
//!       --extern alter=libalter.rlib -o NAME.wasm lib.rs
//! ```
//!
//! Each tool is an exported function returning what [`handle`] or
//! [`handle_json`] returns:
//!
//! ```ignore
//! #[no_mangle]
//! pub extern "C" fn greet() -> i32 {
//!     alter::handle_json(|args| Ok(format!("hello {}", args["name"].as_str().unwrap_or("you"))))
//! }
//! ```
//!
//! Everything that talks to the host exists only on `wasm32`; elsewhere it
//! panics, so the pure parts (JSON, the wire format) can be unit-tested
//! natively with `rustc --test`.

// Included as a module (`#[path = "alter.rs"] mod alter;`), the parts a
// plugin does not use would each warn.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;

// ---- The Extism kernel -------------------------------------------------

/// The host's functions. Offsets point into the Extism kernel's memory,
/// not ours, so every copy crosses into the host: 8 bytes per call, then
/// the tail byte by byte.
#[cfg(target_arch = "wasm32")]
mod kernel {
    #[link(wasm_import_module = "extism:host/env")]
    extern "C" {
        pub fn input_length() -> u64;
        pub fn input_load_u8(offset: u64) -> u32;
        pub fn input_load_u64(offset: u64) -> u64;
        pub fn alloc(n: u64) -> u64;
        pub fn free(offset: u64);
        pub fn length(offset: u64) -> u64;
        pub fn load_u8(offset: u64) -> u32;
        pub fn load_u64(offset: u64) -> u64;
        pub fn store_u8(offset: u64, v: u32);
        pub fn store_u64(offset: u64, v: u64);
        pub fn output_set(offset: u64, n: u64);
        pub fn error_set(offset: u64);
        pub fn config_get(key: u64) -> u64;
        pub fn log_debug(msg: u64);
        pub fn log_info(msg: u64);
        pub fn log_warn(msg: u64);
        pub fn log_error(msg: u64);
    }

    #[link(wasm_import_module = "extism:host/user")]
    extern "C" {
        /// Takes a block holding the request JSON, which the host frees;
        /// returns a new block holding the reply JSON, which we free.
        pub fn alter_request(request: u64) -> u64;
    }
}

/// Native builds have no host: these keep plugin code compiling for unit
/// tests, and fail loudly if a test reaches the host.
#[cfg(not(target_arch = "wasm32"))]
mod kernel {
    fn none() -> ! {
        panic!("alter: the Extism kernel exists only inside a wasm32 plugin")
    }
    pub unsafe fn input_length() -> u64 { none() }
    pub unsafe fn input_load_u8(_: u64) -> u32 { none() }
    pub unsafe fn input_load_u64(_: u64) -> u64 { none() }
    pub unsafe fn alloc(_: u64) -> u64 { none() }
    pub unsafe fn free(_: u64) { none() }
    pub unsafe fn length(_: u64) -> u64 { none() }
    pub unsafe fn load_u8(_: u64) -> u32 { none() }
    pub unsafe fn load_u64(_: u64) -> u64 { none() }
    pub unsafe fn store_u8(_: u64, _: u32) { none() }
    pub unsafe fn store_u64(_: u64, _: u64) { none() }
    pub unsafe fn output_set(_: u64, _: u64) { none() }
    pub unsafe fn error_set(_: u64) { none() }
    pub unsafe fn config_get(_: u64) -> u64 { none() }
    pub unsafe fn log_debug(_: u64) { none() }
    pub unsafe fn log_info(_: u64) { none() }
    pub unsafe fn log_warn(_: u64) { none() }
    pub unsafe fn log_error(_: u64) { none() }
    pub unsafe fn alter_request(_: u64) -> u64 { none() }
}

/// Copies n bytes through load8/load64 into a new vector.
fn copy_in(n: u64, load64: impl Fn(u64) -> u64, load8: impl Fn(u64) -> u32) -> Vec<u8> {
    let mut b = vec![0u8; n as usize];
    let mut i = 0usize;
    let mut words = b.chunks_exact_mut(8);
    for w in &mut words {
        w.copy_from_slice(&load64(i as u64).to_le_bytes()); // wasm and the kernel are little-endian
        i += 8;
    }
    for byte in words.into_remainder() {
        *byte = load8(i as u64) as u8;
        i += 1;
    }
    b
}

fn read_input() -> Vec<u8> {
    unsafe {
        copy_in(
            kernel::input_length(),
            |i| kernel::input_load_u64(i),
            |i| kernel::input_load_u8(i),
        )
    }
}

/// Copies the kernel block at off into our memory; 0 is "no block".
fn read_block(off: u64) -> Vec<u8> {
    if off == 0 {
        return Vec::new();
    }
    unsafe {
        copy_in(
            kernel::length(off),
            |i| kernel::load_u64(off + i),
            |i| kernel::load_u8(off + i),
        )
    }
}

/// Copies b into a new kernel block and returns its offset, or 0 for an
/// empty b: the kernel has no empty blocks.
fn write_block(b: &[u8]) -> u64 {
    if b.is_empty() {
        return 0;
    }
    unsafe {
        let off = kernel::alloc(b.len() as u64);
        let mut i = 0u64;
        let mut words = b.chunks_exact(8);
        for w in &mut words {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            kernel::store_u64(off + i, u64::from_le_bytes(a));
            i += 8;
        }
        for &byte in words.remainder() {
            kernel::store_u8(off + i, byte as u32);
            i += 1;
        }
        off
    }
}

// ---- Input, output, errors, logs, settings -----------------------------

/// The call's input: for a tool, its arguments as a UTF-8 JSON object.
pub fn input() -> Vec<u8> {
    read_input()
}

/// The call's input parsed as JSON. An empty input is an empty object, so
/// a tool without arguments may be called with none.
pub fn input_json() -> Result<Json, JsonError> {
    let b = read_input();
    if b.is_empty() {
        return Ok(Json::Object(Vec::new()));
    }
    Json::parse(&b)
}

/// Sets the call's output, replacing any set before.
pub fn output(b: &[u8]) {
    unsafe { kernel::output_set(write_block(b), b.len() as u64) }
}

/// Sets the call's output to a text (tools with `"result": "text"`).
pub fn output_text(s: &str) {
    output(s.as_bytes())
}

/// Sets the call's output to a JSON value (`"result": "json"` wants an object).
pub fn output_json(v: &Json) {
    output(v.to_string().as_bytes())
}

/// Sets the call's output to an MCP tool result (`"result": "mcp"`).
pub fn output_mcp(r: &McpResult) {
    output_json(&r.to_json())
}

/// Makes the call fail with msg; the host reports it as the tool's error.
/// The export should then return non-zero, as [`handle`] does.
pub fn set_error(msg: &str) {
    // An empty message would read as "no error".
    let msg = if msg.is_empty() { "tool failed" } else { msg };
    unsafe { kernel::error_set(write_block(msg.as_bytes())) }
}

/// A log level; the host shows debug lines only at its debug level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// Writes one line to the host's log at level. The host frees the block.
pub fn log(level: Level, msg: &str) {
    if msg.is_empty() {
        return; // the kernel has no empty block to pass
    }
    let off = write_block(msg.as_bytes());
    unsafe {
        match level {
            Level::Debug => kernel::log_debug(off),
            Level::Info => kernel::log_info(off),
            Level::Warn => kernel::log_warn(off),
            Level::Error => kernel::log_error(off),
        }
    }
}

/// Logs at debug level.
pub fn log_debug(msg: &str) {
    log(Level::Debug, msg)
}

/// Logs at info level.
pub fn log_info(msg: &str) {
    log(Level::Info, msg)
}

/// Logs at warn level.
pub fn log_warn(msg: &str) {
    log(Level::Warn, msg)
}

/// Logs at error level.
pub fn log_error(msg: &str) {
    log(Level::Error, msg)
}

/// Returns the plugin setting key: the operator's NAME.config.json, else
/// the default the manifest's "config" declares; None for a setting with
/// neither. Settings are strings (parse them as needed) and never secrets:
/// credentials stay with the host.
pub fn setting(key: &str) -> Option<String> {
    if key.is_empty() {
        return None;
    }
    // config_get reads the key block but leaves it to us to free; the
    // value block, if any, is ours too.
    let k = write_block(key.as_bytes());
    let v = unsafe { kernel::config_get(k) };
    unsafe { kernel::free(k) };
    if v == 0 {
        return None;
    }
    let b = read_block(v);
    unsafe { kernel::free(v) };
    Some(String::from_utf8_lossy(&b).into_owned())
}

// ---- Running a tool ----------------------------------------------------

/// The error a tool returns: anything printable. `?` converts an
/// [`Error`], a [`JsonError`], a `String` or a `&str` (via `.into()`).
pub type BoxError = Box<dyn std::error::Error>;

/// What a tool may return as its output.
pub trait Output {
    fn into_output(self) -> Vec<u8>;
}

impl Output for Vec<u8> {
    fn into_output(self) -> Vec<u8> {
        self
    }
}

impl Output for String {
    fn into_output(self) -> Vec<u8> {
        self.into_bytes()
    }
}

impl<'a> Output for &'a str {
    fn into_output(self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

impl Output for Json {
    fn into_output(self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl Output for McpResult {
    fn into_output(self) -> Vec<u8> {
        self.to_json().to_string().into_bytes()
    }
}

/// Runs one tool call on raw bytes: passes the input to f and sets f's
/// result as the output, or its error as the call's error. Return its
/// result from the exported function: 0 on success, 1 on error.
pub fn handle<O, F>(f: F) -> i32
where
    O: Output,
    F: FnOnce(&[u8]) -> Result<O, BoxError>,
{
    run(|| {
        let input = read_input();
        f(&input).map(Output::into_output)
    })
}

/// Runs one tool call on JSON arguments: parses the input (none is an
/// empty object) and passes it to f; otherwise as [`handle`].
pub fn handle_json<O, F>(f: F) -> i32
where
    O: Output,
    F: FnOnce(&Json) -> Result<O, BoxError>,
{
    run(|| {
        let args = input_json().map_err(|e| format!("invalid arguments: {}", e))?;
        f(&args).map(Output::into_output)
    })
}

fn run<F: FnOnce() -> Result<Vec<u8>, BoxError>>(f: F) -> i32 {
    install_panic_hook();
    // Unwinding exists only natively; on wasm32 a panic aborts, and the
    // hook has already set the message by then.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(out)) => {
            output(&out);
            0
        }
        Ok(Err(e)) => {
            set_error(&e.to_string());
            1
        }
        Err(p) => {
            set_error(&format!("panic: {}", panic_text(&*p)));
            1
        }
    }
}

/// A panic on wasm32 aborts the instance with an `unreachable` trap, and
/// the host throws the instance away. Before that, the hook sets the
/// panic's message as the call's error and logs it, so the reason is not
/// lost with the instance.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let mut msg = format!("panic: {}", panic_text(info.payload()));
            if let Some(l) = info.location() {
                msg.push_str(&format!(" (at {}:{})", l.file(), l.line()));
            }
            set_error(&msg);
            log_error(&msg);
        }));
    });
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}

// ---- MCP results -------------------------------------------------------

/// A tool result for `"result": "mcp"`: content blocks, optional
/// structured content, and whether it reports an error.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct McpResult {
    pub content: Vec<Content>,
    pub structured: Option<Json>,
    pub is_error: bool,
}

/// One MCP content block.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    Text(String),
    Image { data: Vec<u8>, mime_type: String },
    Audio { data: Vec<u8>, mime_type: String },
    /// Any other block (a resource, a resource link), as MCP spells it.
    Other(Json),
}

impl McpResult {
    /// A result holding one text block.
    pub fn text(s: impl Into<String>) -> McpResult {
        McpResult { content: vec![Content::Text(s.into())], ..McpResult::default() }
    }

    /// Adds a content block.
    pub fn with(mut self, c: Content) -> McpResult {
        self.content.push(c);
        self
    }

    /// Sets the structured content (checked against the output schema).
    pub fn with_structured(mut self, v: Json) -> McpResult {
        self.structured = Some(v);
        self
    }

    /// The result in MCP's JSON shape.
    pub fn to_json(&self) -> Json {
        let content = self
            .content
            .iter()
            .map(|c| match c {
                Content::Text(t) => Json::object(vec![("type", "text".into()), ("text", t.as_str().into())]),
                Content::Image { data, mime_type } => Json::object(vec![
                    ("type", "image".into()),
                    ("data", base64_encode(data).into()),
                    ("mimeType", mime_type.as_str().into()),
                ]),
                Content::Audio { data, mime_type } => Json::object(vec![
                    ("type", "audio".into()),
                    ("data", base64_encode(data).into()),
                    ("mimeType", mime_type.as_str().into()),
                ]),
                Content::Other(v) => v.clone(),
            })
            .collect::<Vec<_>>();
        let mut o = Json::object(vec![("content", Json::Array(content))]);
        if let Some(s) = &self.structured {
            o.insert("structuredContent", s.clone());
        }
        if self.is_error {
            o.insert("isError", true.into());
        }
        o
    }
}

// ---- alter_request -----------------------------------------------------

/// One HTTP request the host makes on the tool's behalf. The host checks
/// it against the manifest's allowed_hosts and adds the credential of the
/// tool's provider: never set one yourself.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Request {
    /// The HTTP method; empty means GET.
    pub method: String,
    /// Absolute http or https URL.
    pub url: String,
    /// Query parameters, added to any the URL has; a name may repeat.
    pub query: Vec<(String, String)>,
    /// Headers; a later one replaces an earlier one of the same name.
    pub headers: Vec<(String, String)>,
    /// Sent as is.
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, url: &str) -> Request {
        Request { method: method.to_string(), url: url.to_string(), ..Request::default() }
    }
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }
    pub fn post(url: &str) -> Request {
        Request::new("POST", url)
    }
    pub fn put(url: &str) -> Request {
        Request::new("PUT", url)
    }
    pub fn patch(url: &str) -> Request {
        Request::new("PATCH", url)
    }
    pub fn delete(url: &str) -> Request {
        Request::new("DELETE", url)
    }

    /// Adds a query parameter; call again with the same name for a list.
    pub fn query(mut self, name: &str, value: &str) -> Request {
        self.query.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets a header, replacing one of the same name (in any case).
    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Request {
        self.body = b.into();
        self
    }

    /// Sets the body to v as JSON and, unless one is set, the Content-Type.
    pub fn json(mut self, v: &Json) -> Request {
        self.body = v.to_string().into_bytes();
        if !self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            self = self.header("Content-Type", "application/json");
        }
        self
    }

    /// Asks the host to make the request; see [`request`].
    pub fn send(&self) -> Result<Response, Error> {
        request(self)
    }

    /// The request in the alter_request wire format. The body travels as
    /// "body" when it is UTF-8 and as "body_base64" otherwise: a JSON
    /// string cannot carry arbitrary bytes.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut o = Json::Object(Vec::new());
        if !self.method.is_empty() {
            o.insert("method", self.method.as_str().into());
        }
        o.insert("url", self.url.as_str().into());
        if !self.query.is_empty() {
            let mut q = Json::Object(Vec::new());
            for (k, v) in &self.query {
                match q.get_mut(k) {
                    Some(Json::Array(vs)) => vs.push(v.as_str().into()),
                    _ => q.insert(k, Json::Array(vec![v.as_str().into()])),
                }
            }
            o.insert("query", q);
        }
        if !self.headers.is_empty() {
            let mut h: Vec<(String, Json)> = Vec::new();
            for (k, v) in &self.headers {
                // The host keeps one value per name; make it the last.
                h.retain(|(hk, _)| !hk.eq_ignore_ascii_case(k));
                h.push((k.clone(), v.as_str().into()));
            }
            o.insert("headers", Json::Object(h));
        }
        if !self.body.is_empty() {
            match std::str::from_utf8(&self.body) {
                Ok(s) => o.insert("body", s.into()),
                Err(_) => o.insert("body_base64", base64_encode(&self.body).into()),
            }
        }
        o.to_string().into_bytes()
    }
}

/// The upstream's answer. Any HTTP status is a Response: only failing to
/// get an answer at all is an [`Error`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Response {
    pub status: u16,
    /// Lower-case names; repeated headers arrive joined with ", ".
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Response {
    /// The header name (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Json, JsonError> {
        Json::parse(&self.body)
    }
}

/// Kinds of alter_request failure. Codes are stable API: match on them,
/// not on messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Code {
    /// The request was malformed (bad method, relative URL, bad header).
    BadRequest,
    /// The URL's scheme or host is outside allowed_hosts, also after a redirect.
    HostNotAllowed,
    /// The upstream did not answer in time.
    Timeout,
    /// A request or response body exceeded the plugin's limits.
    TooLarge,
    /// The connection to the upstream failed.
    UpstreamUnreachable,
    /// The host failed, or its reply could not be read.
    Internal,
    /// The person has not connected the tool's provider; see `connect_url`.
    GrantNotFound,
    /// The grant lacks `missing_scopes`; `connect_url` asks for them.
    ScopeReauthRequired,
    /// A policy forbids this method, host or path.
    PolicyDenied,
    /// A person must approve this request first.
    ApprovalRequired,
    /// A code this binding does not know yet, as the host spelled it.
    Unknown(String),
}

impl Code {
    /// The code as the wire spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Code::BadRequest => "bad_request",
            Code::HostNotAllowed => "host_not_allowed",
            Code::Timeout => "timeout",
            Code::TooLarge => "too_large",
            Code::UpstreamUnreachable => "upstream_unreachable",
            Code::Internal => "internal",
            Code::GrantNotFound => "grant_not_found",
            Code::ScopeReauthRequired => "scope_reauth_required",
            Code::PolicyDenied => "policy_denied",
            Code::ApprovalRequired => "approval_required",
            Code::Unknown(s) => s,
        }
    }

    /// The code named s; an empty s is Internal, as in the host.
    pub fn parse(s: &str) -> Code {
        match s {
            "bad_request" => Code::BadRequest,
            "host_not_allowed" => Code::HostNotAllowed,
            "timeout" => Code::Timeout,
            "too_large" => Code::TooLarge,
            "upstream_unreachable" => Code::UpstreamUnreachable,
            "internal" | "" => Code::Internal,
            "grant_not_found" => Code::GrantNotFound,
            "scope_reauth_required" => Code::ScopeReauthRequired,
            "policy_denied" => Code::PolicyDenied,
            "approval_required" => Code::ApprovalRequired,
            other => Code::Unknown(other.to_string()),
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed alter_request, as the host reported it. Returning it from a
/// tool lets the host show the person what to do (connect an account,
/// grant a scope) instead of a generic failure.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    pub code: Code,
    pub message: String,
    /// Set with GrantNotFound and ScopeReauthRequired.
    pub connect_url: Option<String>,
    /// Set with ScopeReauthRequired.
    pub missing_scopes: Vec<String>,
}

impl Error {
    pub fn new(code: Code, message: impl Into<String>) -> Error {
        Error { code, message: message.into(), connect_url: None, missing_scopes: Vec::new() }
    }
}

/// "code: message", as the host formats its errors.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// Asks the host to make req and returns the upstream's answer, whatever
/// its status, or the typed error of a request that was refused or failed.
pub fn request(req: &Request) -> Result<Response, Error> {
    let off = unsafe { kernel::alter_request(write_block(&req.to_wire())) };
    if off == 0 {
        return Err(Error::new(Code::Internal, "alter_request returned no reply"));
    }
    let reply = read_block(off);
    unsafe { kernel::free(off) };
    parse_reply(&reply)
}

/// GETs url; see [`request`].
pub fn get(url: &str) -> Result<Response, Error> {
    request(&Request::get(url))
}

fn internal(msg: impl Into<String>) -> Error {
    Error::new(Code::Internal, msg)
}

/// Decodes the host's reply to alter_request: a response or an error. A
/// reply that cannot be read (not JSON, missing or mistyped fields) is an
/// Internal error naming the problem, so callers meet one error type and
/// never a panic.
pub fn parse_reply(raw: &[u8]) -> Result<Response, Error> {
    let v = Json::parse(raw).map_err(|e| internal(format!("alter_request reply is not valid JSON: {}", e)))?;
    if !matches!(v, Json::Object(_)) {
        return Err(internal(format!("alter_request reply is a JSON {}, not an object", v.kind())));
    }
    match v.get("error") {
        None | Some(Json::Null) => {}
        Some(e) => return Err(parse_error(e)),
    }
    let status = match v.get("status") {
        None => return Err(internal("alter_request reply has neither \"status\" nor \"error\"")),
        Some(Json::Number(n)) => n.parse::<u16>().ok(),
        Some(_) => None,
    };
    let status = status.ok_or_else(|| internal("alter_request reply's \"status\" is not an HTTP status code"))?;
    let mut headers = BTreeMap::new();
    match v.get("headers") {
        None => return Err(internal("alter_request reply has no \"headers\"")),
        Some(Json::Object(h)) => {
            for (k, hv) in h {
                match hv {
                    Json::String(s) => {
                        headers.insert(k.to_ascii_lowercase(), s.clone());
                    }
                    other => {
                        return Err(internal(format!(
                            "alter_request reply's header {:?} is a JSON {}, not a string",
                            k,
                            other.kind()
                        )))
                    }
                }
            }
        }
        Some(other) => {
            return Err(internal(format!("alter_request reply's \"headers\" is a JSON {}, not an object", other.kind())))
        }
    }
    let body = match v.get("body") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::String(s)) => s.clone().into_bytes(),
        Some(other) => {
            return Err(internal(format!("alter_request reply's \"body\" is a JSON {}, not a string", other.kind())))
        }
    };
    let body = match v.get("body_base64") {
        None | Some(Json::Null) => body,
        Some(Json::String(s)) if s.is_empty() => body,
        Some(Json::String(_)) if !body.is_empty() => {
            return Err(internal("alter_request reply has both \"body\" and \"body_base64\""))
        }
        Some(Json::String(s)) => base64_decode(s)
            .map_err(|e| internal(format!("alter_request reply has invalid body_base64: {}", e)))?,
        Some(other) => {
            return Err(internal(format!(
                "alter_request reply's \"body_base64\" is a JSON {}, not a string",
                other.kind()
            )))
        }
    };
    Ok(Response { status, headers, body })
}

fn parse_error(e: &Json) -> Error {
    let field = |name: &str| -> Result<Option<String>, Error> {
        match e.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(internal(format!(
                "alter_request reply's \"error.{}\" is a JSON {}, not a string",
                name,
                other.kind()
            ))),
        }
    };
    let parsed = (|| -> Result<Error, Error> {
        if !matches!(e, Json::Object(_)) {
            return Err(internal(format!("alter_request reply's \"error\" is a JSON {}, not an object", e.kind())));
        }
        let code = field("code")?;
        let message = field("message")?;
        let (code, message) = match (code, message) {
            (Some(c), Some(m)) => (c, m),
            (None, _) => return Err(internal("alter_request reply's \"error\" has no \"code\"")),
            (_, None) => return Err(internal("alter_request reply's \"error\" has no \"message\"")),
        };
        let mut err = Error::new(Code::parse(&code), message);
        err.connect_url = field("connect_url")?.filter(|u| !u.is_empty());
        match e.get("missing_scopes") {
            None | Some(Json::Null) => {}
            Some(Json::Array(items)) => {
                for it in items {
                    match it {
                        Json::String(s) => err.missing_scopes.push(s.clone()),
                        _ => {
                            return Err(internal(
                                "alter_request reply's \"error.missing_scopes\" holds something other than strings",
                            ))
                        }
                    }
                }
            }
            Some(other) => {
                return Err(internal(format!(
                    "alter_request reply's \"error.missing_scopes\" is a JSON {}, not a list",
                    other.kind()
                )))
            }
        }
        Ok(err)
    })();
    match parsed {
        Ok(e) | Err(e) => e,
    }
}

// ---- base64 (standard alphabet, padded) --------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes b in standard, padded base64.
pub fn base64_encode(b: &[u8]) -> String {
    let mut out = String::with_capacity((b.len() + 2) / 3 * 4);
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard, padded base64. Line breaks are skipped, as Go's
/// decoder does.
pub fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut quad = [0u8; 4];
    let mut n = 0;
    let mut pad = 0;
    for (i, &c) in s.as_bytes().iter().enumerate() {
        if c == b'\r' || c == b'\n' {
            continue;
        }
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' if n >= 2 => {
                pad += 1;
                0
            }
            _ => return Err(format!("illegal base64 data at input byte {}", i)),
        };
        if pad > 0 && c != b'=' {
            return Err(format!("illegal base64 data at input byte {}", i));
        }
        quad[n] = v;
        n += 1;
        if n == 4 {
            let x = (quad[0] as u32) << 18 | (quad[1] as u32) << 12 | (quad[2] as u32) << 6 | quad[3] as u32;
            out.push((x >> 16) as u8);
            if pad < 2 {
                out.push((x >> 8) as u8);
            }
            if pad < 1 {
                out.push(x as u8);
            }
            n = 0;
            if pad > 0 {
                pad = 3; // nothing may follow padding
            }
        } else if pad == 3 {
            return Err(format!("illegal base64 data at input byte {}", i));
        }
    }
    if n != 0 {
        return Err(format!("illegal base64 data at input byte {}", s.len()));
    }
    Ok(out)
}

// ---- JSON --------------------------------------------------------------

/// A JSON value. Numbers keep their literal text, so nothing is lost or
/// reformatted on the way through; objects keep their members in order
/// (a repeated name: [`Json::get`] sees the last, as Go does).
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's literal, e.g. `-1.5e3`.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

static NULL: Json = Json::Null;

/// The deepest nesting parse and compact accept, as Go's encoding/json.
/// Deeper input is refused with an error, not a crash.
pub const MAX_DEPTH: usize = 10000;

impl Json {
    /// An object of the given members, in order.
    pub fn object<K: Into<String>>(members: Vec<(K, Json)>) -> Json {
        Json::Object(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The member name of an object (the last, if repeated).
    pub fn get(&self, name: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Like [`Json::get`], mutable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Json> {
        match self {
            Json::Object(m) => m.iter_mut().rev().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Sets member name of an object, replacing it in place if present.
    /// On anything but an object it does nothing.
    pub fn insert(&mut self, name: &str, v: Json) {
        if let Some(slot) = self.get_mut(name) {
            *slot = v;
        } else if let Json::Object(m) = self {
            m.push((name.to_string(), v));
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }
    /// The number as an i64, if it is an integer literal in range.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }
    /// The number as a u64, if it is a non-negative integer literal in range.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.parse().ok(),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&Vec<Json>> {
        match self {
            Json::Array(a) => Some(a),
            _ => None,
        }
    }
    pub fn as_object(&self) -> Option<&Vec<(String, Json)>> {
        match self {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }

    /// "null", "boolean", "number", "string", "array" or "object".
    pub fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "boolean",
            Json::Number(_) => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }

    /// Parses one JSON value, with surrounding white space. Strings decode
    /// as Go's encoding/json decodes them: an invalid UTF-8 byte or a lone
    /// surrogate escape becomes U+FFFD.
    pub fn parse(src: &[u8]) -> Result<Json, JsonError> {
        Parser { src, pos: 0 }.document()
    }
}

impl std::ops::Index<&str> for Json {
    type Output = Json;
    /// The member name, or Null when absent or not an object.
    fn index(&self, name: &str) -> &Json {
        self.get(name).unwrap_or(&NULL)
    }
}

impl std::ops::Index<usize> for Json {
    type Output = Json;
    /// The element i, or Null when absent or not an array.
    fn index(&self, i: usize) -> &Json {
        match self {
            Json::Array(a) => a.get(i).unwrap_or(&NULL),
            _ => &NULL,
        }
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}
impl<'a> From<&'a str> for Json {
    fn from(s: &'a str) -> Json {
        Json::String(s.to_string())
    }
}
impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::String(s)
    }
}
impl From<Vec<Json>> for Json {
    fn from(a: Vec<Json>) -> Json {
        Json::Array(a)
    }
}
impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(o: Option<T>) -> Json {
        o.map_or(Json::Null, Into::into)
    }
}
macro_rules! json_from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Json {
            fn from(n: $t) -> Json { Json::Number(n.to_string()) }
        }
    )*};
}
json_from_int!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl From<f64> for Json {
    /// Formatted as Go's encoding/json does; NaN and infinities, which
    /// JSON cannot hold, become null.
    fn from(x: f64) -> Json {
        if !x.is_finite() {
            return Json::Null;
        }
        let a = x.abs();
        if a == 0.0 || (1e-6..1e21).contains(&a) {
            return Json::Number(format!("{}", x));
        }
        let s = format!("{:e}", x); // "1e21", "1.5e-7"
        let s = match s.find('e') {
            Some(i) if !s[i + 1..].starts_with('-') => format!("{}e+{}", &s[..i], &s[i + 1..]),
            _ => s,
        };
        Json::Number(s)
    }
}

/// Encodes compactly, strings escaped exactly as Go's json.Marshal escapes
/// them: `"`, `\`, control characters, `<`, `>`, `&`, U+2028 and U+2029.
impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        encode_into(self, &mut s);
        f.write_str(&s)
    }
}

fn encode_into(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(true) => out.push_str("true"),
        Json::Bool(false) => out.push_str("false"),
        Json::Number(n) => out.push_str(n),
        Json::String(s) => quote_into(s, out),
        Json::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_into(x, out);
            }
            out.push(']');
        }
        Json::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                quote_into(k, out);
                out.push(':');
                encode_into(x, out);
            }
            out.push('}');
        }
    }
}

/// Writes s as a JSON string literal, escaped as Go's json.Marshal does.
pub fn quote_into(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            _ => None,
        };
        let long = matches!(c, '\u{0}'..='\u{1f}' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}');
        if esc.is_none() && !long {
            continue;
        }
        out.push_str(&s[start..i]);
        start = i + c.len_utf8();
        if let Some(e) = esc {
            out.push_str(e);
        } else {
            let n = c as u32;
            out.push_str("\\u");
            for shift in [12, 8, 4, 0] {
                out.push(HEX[(n >> shift & 15) as usize] as char);
            }
        }
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Removes the insignificant white space from the JSON text src and keeps
/// every other byte as it is, escapes included, as Go's json.Compact does.
/// Invalid JSON is an error.
pub fn compact(src: &[u8]) -> Result<Vec<u8>, JsonError> {
    let mut p = Parser { src, pos: 0 };
    let mut out = Vec::with_capacity(src.len());
    // Iterative, like the parser: a hostile depth must not exhaust the stack.
    let mut stack: Vec<u8> = Vec::new();
    'value: loop {
        p.ws();
        let copy_from = p.pos;
        match p.peek() {
            Some(b'{') => {
                p.check_depth(stack.len())?;
                p.pos += 1;
                out.push(b'{');
                p.ws();
                if p.eat(b'}') {
                    out.push(b'}');
                } else {
                    stack.push(b'}');
                    let k = p.pos;
                    p.expect_key()?;
                    out.extend_from_slice(&src[k..p.pos]);
                    p.colon()?;
                    out.push(b':');
                    continue 'value;
                }
            }
            Some(b'[') => {
                p.check_depth(stack.len())?;
                p.pos += 1;
                out.push(b'[');
                p.ws();
                if p.eat(b']') {
                    out.push(b']');
                } else {
                    stack.push(b']');
                    continue 'value;
                }
            }
            _ => {
                p.scalar(false)?;
                out.extend_from_slice(&src[copy_from..p.pos]);
            }
        }
        // A value ended: close containers or go on to the next member.
        loop {
            let close = match stack.last() {
                None => {
                    p.end()?;
                    return Ok(out);
                }
                Some(&c) => c,
            };
            p.ws();
            if p.eat(b',') {
                out.push(b',');
                if close == b'}' {
                    p.ws();
                    let k = p.pos;
                    p.expect_key()?;
                    out.extend_from_slice(&src[k..p.pos]);
                    p.colon()?;
                    out.push(b':');
                }
                continue 'value;
            }
            if p.eat(close) {
                out.push(close);
                stack.pop();
                continue;
            }
            return Err(p.after_element(close));
        }
    }
}

/// A JSON syntax error: what was wrong, and at which byte offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    pub message: String,
    pub offset: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for JsonError {}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

enum Frame {
    Array(Vec<Json>),
    Object(Vec<(String, Json)>, String),
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn err(&self, message: String) -> JsonError {
        JsonError { message, offset: self.pos }
    }

    /// An error for the byte at pos, in Go's words; at the end of input,
    /// "unexpected end of JSON input".
    fn unexpected(&self, context: &str) -> JsonError {
        match self.peek() {
            None => self.err("unexpected end of JSON input".to_string()),
            Some(c) => self.err(format!("invalid character {} {}", quote_byte(c), context)),
        }
    }

    fn after_element(&self, close: u8) -> JsonError {
        if close == b'}' {
            self.unexpected("after object key:value pair")
        } else {
            self.unexpected("after array element")
        }
    }

    /// Refuses to open one more container inside depth open ones. Empty
    /// containers count too, as in Go's scanner.
    fn check_depth(&self, depth: usize) -> Result<(), JsonError> {
        if depth >= MAX_DEPTH {
            return Err(self.err("exceeded max depth".to_string()));
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.pos < self.src.len() {
            return Err(self.unexpected("after top-level value"));
        }
        Ok(())
    }

    fn colon(&mut self) -> Result<(), JsonError> {
        self.ws();
        if !self.eat(b':') {
            return Err(self.unexpected("after object key"));
        }
        Ok(())
    }

    fn expect_key(&mut self) -> Result<(), JsonError> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("looking for beginning of object key string"));
        }
        self.string_raw().map(|_| ())
    }

    /// Scans a scalar at pos: a string, number or literal. With decode it
    /// returns the value; otherwise only checks it.
    fn scalar(&mut self, decode: bool) -> Result<Json, JsonError> {
        match self.peek() {
            Some(b'"') => {
                let (start, end, plain) = self.string_raw()?;
                if !decode {
                    return Ok(Json::Null);
                }
                Ok(Json::String(self.decode_string(start, end, plain)?))
            }
            Some(b'-' | b'0'..=b'9') => {
                let start = self.pos;
                self.number()?;
                if !decode {
                    return Ok(Json::Null);
                }
                Ok(Json::Number(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned()))
            }
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            _ => Err(self.unexpected("looking for beginning of value")),
        }
    }

    fn literal(&mut self, word: &str, v: Json) -> Result<Json, JsonError> {
        for (i, &w) in word.as_bytes().iter().enumerate() {
            if self.peek() != Some(w) {
                let ctx = format!("in literal {} (expecting {})", word, quote_byte(w));
                return Err(if i == 0 { self.unexpected("looking for beginning of value") } else { self.unexpected(&ctx) });
            }
            self.pos += 1;
        }
        Ok(v)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), JsonError> {
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.unexpected("in numeric literal")),
        }
        if self.eat(b'.') && self.digits() == 0 {
            return Err(self.unexpected("after decimal point in numeric literal"));
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.unexpected("in exponent of numeric literal"));
            }
        }
        Ok(())
    }

    /// Checks the string starting at pos and moves past it. Returns the
    /// span of its contents and whether it is plain (no escapes, ASCII).
    fn string_raw(&mut self) -> Result<(usize, usize, bool), JsonError> {
        self.pos += 1; // the opening quote
        let start = self.pos;
        let mut plain = true;
        loop {
            match self.peek() {
                None => return Err(self.unexpected("")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok((start, self.pos - 1, plain));
                }
                Some(b'\\') => {
                    plain = false;
                    self.pos += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 1,
                        Some(b'u') => {
                            self.pos += 1;
                            for _ in 0..4 {
                                match self.peek() {
                                    Some(c) if c.is_ascii_hexdigit() => self.pos += 1,
                                    _ => return Err(self.unexpected("in \\u hexadecimal character escape")),
                                }
                            }
                        }
                        _ => return Err(self.unexpected("in string escape code")),
                    }
                }
                Some(c) if c < 0x20 => return Err(self.unexpected("in string literal")),
                Some(c) => {
                    if c >= 0x80 {
                        plain = false;
                    }
                    self.pos += 1;
                }
            }
        }
    }

    /// Decodes the checked string contents src[start..end].
    fn decode_string(&self, start: usize, end: usize, plain: bool) -> Result<String, JsonError> {
        let s = &self.src[start..end];
        let mut out: Vec<u8> = Vec::with_capacity(s.len());
        if plain {
            out.extend_from_slice(s);
        } else {
            let mut i = 0;
            while i < s.len() {
                let c = s[i];
                if c == b'\\' {
                    let e = s[i + 1];
                    i += 2;
                    let simple = match e {
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => 0,
                        other => other, // " \ /
                    };
                    if e != b'u' {
                        out.push(simple);
                        continue;
                    }
                    let r = hex4(&s[i..i + 4]);
                    i += 4;
                    let mut ch = char::from_u32(r);
                    if (0xD800..0xE000).contains(&r) {
                        // Join a surrogate pair; anything else is U+FFFD,
                        // and only the first escape is consumed.
                        ch = None;
                        if r < 0xDC00 && s.len() >= i + 6 && s[i] == b'\\' && s[i + 1] == b'u' {
                            let lo = hex4(&s[i + 2..i + 6]);
                            if (0xDC00..0xE000).contains(&lo) {
                                ch = char::from_u32(0x10000 + ((r - 0xD800) << 10) + (lo - 0xDC00));
                                i += 6;
                            }
                        }
                    }
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.unwrap_or('\u{FFFD}').encode_utf8(&mut buf).as_bytes());
                } else if c < 0x80 {
                    out.push(c);
                    i += 1;
                } else {
                    let (ch, n) = decode_rune(&s[i..]);
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    i += n;
                }
            }
        }
        String::from_utf8(out).map_err(|_| self.err("string did not decode to UTF-8".to_string()))
    }

    fn key(&mut self) -> Result<String, JsonError> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("looking for beginning of object key string"));
        }
        let (s, e, plain) = self.string_raw()?;
        let k = self.decode_string(s, e, plain)?;
        self.colon()?;
        Ok(k)
    }

    /// Parses a whole document. Iterative, with an explicit stack, so that
    /// deep nesting costs heap, not the small wasm stack.
    fn document(mut self) -> Result<Json, JsonError> {
        let mut stack: Vec<Frame> = Vec::new();
        'value: loop {
            self.ws();
            let mut v = match self.peek() {
                Some(b'{') => {
                    self.check_depth(stack.len())?;
                    self.pos += 1;
                    self.ws();
                    if self.eat(b'}') {
                        Json::Object(Vec::new())
                    } else {
                        let k = self.key()?;
                        stack.push(Frame::Object(Vec::new(), k));
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    self.check_depth(stack.len())?;
                    self.pos += 1;
                    self.ws();
                    if self.eat(b']') {
                        Json::Array(Vec::new())
                    } else {
                        stack.push(Frame::Array(Vec::new()));
                        continue 'value;
                    }
                }
                _ => self.scalar(true)?,
            };
            loop {
                let top = match stack.last_mut() {
                    None => {
                        self.end()?;
                        return Ok(v);
                    }
                    Some(t) => t,
                };
                self.ws();
                let close = match top {
                    Frame::Array(items) => {
                        items.push(v);
                        b']'
                    }
                    Frame::Object(members, key) => {
                        members.push((std::mem::take(key), v));
                        b'}'
                    }
                };
                if self.eat(b',') {
                    if let Frame::Object(_, key) = top {
                        *key = self.key()?;
                    }
                    continue 'value;
                }
                if !self.eat(close) {
                    return Err(self.after_element(close));
                }
                v = match stack.pop() {
                    Some(Frame::Array(items)) => Json::Array(items),
                    Some(Frame::Object(members, _)) => Json::Object(members),
                    None => Json::Null, // unreachable: top was Some
                };
            }
        }
    }
}

fn hex4(h: &[u8]) -> u32 {
    h.iter().fold(0, |n, &c| n << 4 | (c as char).to_digit(16).unwrap_or(0))
}

/// Decodes one UTF-8 sequence at the start of s, as Go's utf8.DecodeRune:
/// anything invalid is U+FFFD consuming one byte.
fn decode_rune(s: &[u8]) -> (char, usize) {
    let c0 = s[0];
    let (n, lo, hi) = match c0 {
        0xC2..=0xDF => (2, 0x80, 0xBF),
        0xE0 => (3, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80, 0xBF),
        0xED => (3, 0x80, 0x9F),
        0xF0 => (4, 0x90, 0xBF),
        0xF1..=0xF3 => (4, 0x80, 0xBF),
        0xF4 => (4, 0x80, 0x8F),
        _ => return ('\u{FFFD}', 1),
    };
    if s.len() < n || s[1] < lo || s[1] > hi || s[2..n].iter().any(|&b| !(0x80..=0xBF).contains(&b)) {
        return ('\u{FFFD}', 1);
    }
    match std::str::from_utf8(&s[..n]).ok().and_then(|t| t.chars().next()) {
        Some(ch) => (ch, n),
        None => ('\u{FFFD}', 1),
    }
}

/// Quotes a byte for an error message as Go's scanner does.
fn quote_byte(c: u8) -> String {
    match c {
        b'\'' => "'\\''".to_string(),
        b'"' => "'\"'".to_string(),
        0x20..=0x7e => format!("'{}'", c as char),
        _ => format!("'\\x{:02x}'", c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn internal_msg(raw: &str) -> String {
        match parse_reply(raw.as_bytes()) {
            Err(e) if e.code == Code::Internal => e.message,
            other => panic!("{:?}: want an internal error, got {:?}", raw, other),
        }
    }

    #[test]
    fn reply_response() {
        let r = parse_reply(br#"{"status":201,"headers":{"Content-Type":"text/plain","x-two":"a, b"},"body":"h\u00e9llo"}"#)
            .unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.header("X-Two"), Some("a, b"));
        assert_eq!(r.body, "héllo".as_bytes());
        let r = parse_reply(br#"{"status":200,"headers":{},"body_base64":"//4A"}"#).unwrap();
        assert_eq!(r.body, vec![0xff, 0xfe, 0]);
        let r = parse_reply(br#"{"status":204,"headers":{}}"#).unwrap();
        assert!(r.body.is_empty() && r.is_success());
    }

    #[test]
    fn reply_error() {
        let e = parse_reply(
            br#"{"error":{"code":"scope_reauth_required","message":"needs repo","connect_url":"https://a.example/c","missing_scopes":["repo"]}}"#,
        )
        .unwrap_err();
        assert_eq!(e.code, Code::ScopeReauthRequired);
        assert_eq!(e.connect_url.as_deref(), Some("https://a.example/c"));
        assert_eq!(e.missing_scopes, vec!["repo".to_string()]);
        assert_eq!(e.to_string(), "scope_reauth_required: needs repo");
        let e = parse_reply(br#"{"error":{"code":"brand_new","message":"m"}}"#).unwrap_err();
        assert_eq!(e.code, Code::Unknown("brand_new".into()));
        assert_eq!(e.to_string(), "brand_new: m");
        for code in [
            "bad_request", "host_not_allowed", "timeout", "too_large", "upstream_unreachable", "internal",
            "grant_not_found", "scope_reauth_required", "policy_denied", "approval_required",
        ] {
            let c = Code::parse(code);
            assert!(!matches!(c, Code::Unknown(_)), "{}", code);
            assert_eq!(c.as_str(), code);
        }
    }

    #[test]
    fn malformed_replies_are_internal() {
        for (raw, want) in [
            ("", "not valid JSON"),
            ("{", "not valid JSON"),
            ("{\"status\":200,\"headers\":{}} x", "not valid JSON"),
            ("[]", "is a JSON array, not an object"),
            ("null", "is a JSON null"),
            ("{}", "neither \"status\" nor \"error\""),
            ("{\"status\":\"200\",\"headers\":{}}", "\"status\" is not an HTTP status code"),
            ("{\"status\":2.5,\"headers\":{}}", "\"status\" is not an HTTP status code"),
            ("{\"status\":70000,\"headers\":{}}", "\"status\" is not an HTTP status code"),
            ("{\"status\":-1,\"headers\":{}}", "\"status\" is not an HTTP status code"),
            ("{\"status\":200}", "no \"headers\""),
            ("{\"status\":200,\"headers\":[]}", "\"headers\" is a JSON array"),
            ("{\"status\":200,\"headers\":{\"a\":1}}", "header \"a\" is a JSON number"),
            ("{\"status\":200,\"headers\":{},\"body\":5}", "\"body\" is a JSON number"),
            ("{\"status\":200,\"headers\":{},\"body_base64\":true}", "\"body_base64\" is a JSON boolean"),
            ("{\"status\":200,\"headers\":{},\"body_base64\":\"!!\"}", "invalid body_base64"),
            ("{\"status\":200,\"headers\":{},\"body_base64\":\"QQ\"}", "invalid body_base64"),
            ("{\"status\":200,\"headers\":{},\"body\":\"x\",\"body_base64\":\"QQ==\"}", "both"),
            ("{\"error\":\"boom\"}", "\"error\" is a JSON string, not an object"),
            ("{\"error\":{\"message\":\"m\"}}", "has no \"code\""),
            ("{\"error\":{\"code\":\"timeout\"}}", "has no \"message\""),
            ("{\"error\":{\"code\":5,\"message\":\"m\"}}", "\"error.code\" is a JSON number"),
            ("{\"error\":{\"code\":\"timeout\",\"message\":[]}}", "\"error.message\" is a JSON array"),
            ("{\"error\":{\"code\":\"x\",\"message\":\"m\",\"connect_url\":1}}", "\"error.connect_url\""),
            ("{\"error\":{\"code\":\"x\",\"message\":\"m\",\"missing_scopes\":\"repo\"}}", "not a list"),
            ("{\"error\":{\"code\":\"x\",\"message\":\"m\",\"missing_scopes\":[1]}}", "other than strings"),
        ] {
            let m = internal_msg(raw);
            assert!(m.starts_with("alter_request reply"), "{:?}: {}", raw, m);
            assert!(m.contains(want), "{:?}: {:?} lacks {:?}", raw, m, want);
        }
    }

    #[test]
    fn request_wire() {
        let r = Request::post("https://api.example.com/x?a=1")
            .query("label", "bug")
            .query("per_page", "5")
            .query("label", "p1")
            .header("accept", "text/plain")
            .header("Accept", "application/json")
            .json(&Json::object(vec![("text", "<héllo> & \u{2028}".into())]));
        assert_eq!(
            String::from_utf8(r.to_wire()).unwrap(),
            r#"{"method":"POST","url":"https://api.example.com/x?a=1","query":{"label":["bug","p1"],"per_page":["5"]},"headers":{"Accept":"application/json","Content-Type":"application/json"},"body":"{\"text\":\"\\u003chéllo\\u003e \\u0026 \\u2028\"}"}"#
        );
        let r = Request { url: "https://e.example/".into(), body: vec![0xff, 0, b'x'], ..Request::default() };
        assert_eq!(String::from_utf8(r.to_wire()).unwrap(), r#"{"url":"https://e.example/","body_base64":"/wB4"}"#);
    }

    #[test]
    fn base64_round_trip() {
        for n in 0..40usize {
            let b: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&b)).unwrap(), b);
        }
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
        assert!(base64_decode("aGVsbG8=x").is_err());
        assert!(base64_decode("aG=sbG8=").is_err());
        assert!(base64_decode("a===").is_err());
        assert_eq!(base64_decode("aGVs\r\nbG8=").unwrap(), b"hello");
    }

    #[test]
    fn json_strings_decode_as_go_does() {
        let v = Json::parse(b"\"a\\u00e9\\ud83d\\ude00\\ud800x\\udc00\\/\\b\\f\\n\\r\\t\"").unwrap();
        assert_eq!(v, Json::String("a\u{e9}\u{1F600}\u{FFFD}x\u{FFFD}/\u{8}\u{c}\n\r\t".into()));
        // Invalid UTF-8: one U+FFFD per bad byte, as Go's DecodeRune.
        let v = Json::parse(b"\"\xf0\x9f\x98A\xed\xa0\x80\xc3\xa9\"").unwrap();
        assert_eq!(v.as_str().unwrap(), "\u{FFFD}\u{FFFD}\u{FFFD}A\u{FFFD}\u{FFFD}\u{FFFD}\u{e9}");
        assert_eq!(Json::parse(b"\"\\ud83d\\u0041\"").unwrap().as_str(), Some("\u{FFFD}A"));
    }

    #[test]
    fn json_encodes_as_go_does() {
        let s = "\"\\<>&\u{0}\u{1f}\u{7f}\u{2028}\u{2029}é☃\u{8}\u{c}\n\r\t";
        assert_eq!(
            Json::from(s).to_string(),
            "\"\\\"\\\\\\u003c\\u003e\\u0026\\u0000\\u001f\u{7f}\\u2028\\u2029é☃\\b\\f\\n\\r\\t\""
        );
        let v = Json::parse(br#" { "a" : [ 1 , -2.5e+3, true, null, {} , [] ], "b":"x", "a":0 } "#).unwrap();
        assert_eq!(v.to_string(), r#"{"a":[1,-2.5e+3,true,null,{},[]],"b":"x","a":0}"#);
        assert_eq!(v["a"], Json::Number("0".into()));
        assert_eq!(v["b"].as_str(), Some("x"));
        assert!(v["zz"].is_null() && v[3].is_null());
        assert_eq!(Json::from(1e21).to_string(), "1e+21");
        assert_eq!(Json::from(1.5e-7).to_string(), "1.5e-7");
        assert_eq!(Json::from(0.25).to_string(), "0.25");
        assert_eq!(Json::from(f64::NAN), Json::Null);
        assert_eq!(Json::from(-3i64).as_i64(), Some(-3));
    }

    #[test]
    fn json_syntax_errors() {
        for (src, want) in [
            ("", "unexpected end of JSON input"),
            ("  ", "unexpected end of JSON input"),
            ("{", "unexpected end of JSON input"),
            ("[1,]", "invalid character ']' looking for beginning of value"),
            ("{\"a\" 1}", "invalid character '1' after object key"),
            ("{\"a\":1 \"b\":2}", "invalid character '\"' after object key:value pair"),
            ("[1 2]", "invalid character '2' after array element"),
            ("{1:2}", "invalid character '1' looking for beginning of object key string"),
            ("01", "invalid character '1' after top-level value"),
            ("1.", "unexpected end of JSON input"),
            ("1.e3", "invalid character 'e' after decimal point in numeric literal"),
            ("-", "unexpected end of JSON input"),
            ("1e", "unexpected end of JSON input"),
            ("tru", "unexpected end of JSON input"),
            ("trUe", "invalid character 'U' in literal true (expecting 'u')"),
            ("\"a\u{1}\"", "invalid character '\\x01' in string literal"),
            ("\"\\x\"", "invalid character 'x' in string escape code"),
            ("\"\\u12g4\"", "invalid character 'g' in \\u hexadecimal character escape"),
            ("'a'", "invalid character '\\'' looking for beginning of value"),
        ] {
            let e = Json::parse(src.as_bytes()).unwrap_err();
            assert_eq!(e.message, want, "{:?}", src);
            let c = compact(src.as_bytes()).unwrap_err();
            assert_eq!(c.message, want, "compact {:?}", src);
        }
    }

    #[test]
    fn json_depth() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let ok = deep(MAX_DEPTH);
        assert!(Json::parse(ok.as_bytes()).is_ok());
        assert_eq!(compact(ok.as_bytes()).unwrap(), ok.as_bytes());
        // Never print a deep value: its Debug form is megabytes.
        let too_deep = |r: Result<Json, JsonError>| matches!(r, Err(e) if e.message == "exceeded max depth");
        let bad = deep(MAX_DEPTH + 1);
        assert!(too_deep(Json::parse(bad.as_bytes())));
        assert!(matches!(compact(bad.as_bytes()), Err(e) if e.message == "exceeded max depth"));
        let objs = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
        assert!(Json::parse(objs(MAX_DEPTH).as_bytes()).is_ok());
        assert!(too_deep(Json::parse(objs(MAX_DEPTH + 1).as_bytes())));
        let empty_obj = format!("{}{{}}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(too_deep(Json::parse(empty_obj.as_bytes())));
    }

    #[test]
    fn compact_keeps_bytes() {
        let src = b" {\n \"a\\u00e9\\/\" :\t[ 1.50 , \"x y\\n\" ,{ } ] ,\"\xff\":-0E+1 }\r\n";
        assert_eq!(compact(src).unwrap(), b"{\"a\\u00e9\\/\":[1.50,\"x y\\n\",{}],\"\xff\":-0E+1}".to_vec());
        assert_eq!(compact(b" 7 ").unwrap(), b"7".to_vec());
    }

    #[test]
    fn mcp_result() {
        let r = McpResult::text("hi")
            .with(Content::Image { data: vec![1, 2, 3], mime_type: "image/png".into() })
            .with_structured(Json::object(vec![("n", 1.into())]));
        assert_eq!(
            r.to_json().to_string(),
            r#"{"content":[{"type":"text","text":"hi"},{"type":"image","data":"AQID","mimeType":"image/png"}],"structuredContent":{"n":1}}"#
        );
    }
}
