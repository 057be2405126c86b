//! Validation: raw TOML → checked `Config`, reporting every problem of the file in one run.
//! The file is parsed once into a TOML tree; each section, pool and route is then decoded on
//! its own, and a section that fails to decode is decoded again key by key, so one bad value
//! never hides another. Semantic checks (references, ranges, regexes, files) follow.

use super::adaptive::validate_adaptive;
use super::diag::{key_seg, Diags};
use super::groups::{validate_group, RawGroup};
use super::model::*;
use super::routes::validate_routes;
use super::schedules::{validate_schedules, RawSchedule};
use super::schema::*;
use super::units::parse_duration;
use serde::de::DeserializeOwned;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

/// Keys that later versions of levee add (DESIGN.md §1); named so the error says "not yet"
/// rather than "unknown".
const NOT_YET_TOP: &[&str] = &[];

pub(super) fn validate(src: &str, base_dir: &Path, d: &mut Diags) -> Option<Config> {
    let root: toml::Table = match toml::from_str(src) {
        Ok(t) => t,
        Err(e) => {
            d.error_at(e.span().map(|s| s.start), e.message().to_string());
            return None;
        }
    };

    let mut raw_server = RawServer::default();
    let mut raw_pools: Vec<(String, RawPool)> = Vec::new();
    let mut raw_routes: Vec<RawRoute> = Vec::new();
    let mut raw_schedules: Vec<RawSchedule> = Vec::new();
    let mut raw_groups: Vec<(String, RawGroup)> = Vec::new();
    let mut raw_log: Option<RawLog> = None;
    let mut raw_tracing = RawTracing::default();
    for (key, value) in &root {
        match key.as_str() {
            "server" => raw_server = decode(value, "server", d),
            "pools" => match value {
                toml::Value::Table(t) => {
                    for (name, v) in t {
                        let path = format!("pools.{}", key_seg(name));
                        raw_pools.push((name.clone(), decode(v, &path, d)));
                    }
                }
                _ => d.error("pools", "expected a table of pools ([pools.NAME])"),
            },
            "log" => raw_log = Some(decode(value, "log", d)),
            "tracing" => raw_tracing = decode(value, "tracing", d),
            "groups" => match value {
                toml::Value::Table(t) => {
                    for (name, v) in t {
                        let path = format!("groups.{}", key_seg(name));
                        raw_groups.push((name.clone(), decode(v, &path, d)));
                    }
                }
                _ => d.error("groups", "expected a table of groups ([groups.NAME])"),
            },
            "routes" => match value {
                toml::Value::Array(a) => {
                    for (i, v) in a.iter().enumerate() {
                        raw_routes.push(decode(v, &format!("routes[{i}]"), d));
                    }
                }
                _ => d.error("routes", "expected an array of tables ([[routes]])"),
            },
            "schedules" => match value {
                toml::Value::Array(a) => {
                    for (i, v) in a.iter().enumerate() {
                        raw_schedules.push(decode(v, &format!("schedules[{i}]"), d));
                    }
                }
                _ => d.error("schedules", "expected an array of tables ([[schedules]])"),
            },
            k if NOT_YET_TOP.contains(&k) => d.error(
                key_seg(k),
                format!("`{k}` is not supported by this version of levee yet"),
            ),
            k => d.error(
                key_seg(k),
                format!(
                    "unknown key `{k}`, expected one of `server`, `log`, `tracing`, `pools`, `groups`, `routes`, `schedules`"
                ),
            ),
        }
    }

    let server = validate_server(&raw_server, base_dir, d);
    let log = match &raw_log {
        None => Some(None),
        Some(l) => validate_log(l, base_dir, d).map(Some),
    };
    let pools: Vec<PoolSpec> = raw_pools
        .iter()
        .filter_map(|(name, raw)| validate_pool(name, raw, d))
        .collect();
    let pool_names: Vec<&str> = raw_pools.iter().map(|(n, _)| n.as_str()).collect();
    let groups: Vec<GroupSpec> = raw_groups
        .iter()
        .filter_map(|(name, raw)| validate_group(name, raw, &pool_names, d))
        .collect();
    for (name, raw) in &raw_pools {
        if let Some(g) = &raw.group {
            if !raw_groups.iter().any(|(n, _)| n == g) {
                let known: Vec<&str> = raw_groups.iter().map(|(n, _)| n.as_str()).collect();
                d.error(
                    format!("pools.{}.group", key_seg(name)),
                    format!(
                        "unknown group {g:?} (known: {})",
                        if known.is_empty() {
                            "none defined".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
    }
    let routes = validate_routes(&raw_routes, &pool_names, base_dir, d);
    let route_names: Vec<&str> = raw_routes
        .iter()
        .filter_map(|r| r.name.as_deref())
        .collect();
    let schedules = validate_schedules(&raw_schedules, &route_names, chrono::Utc::now(), d);

    if raw_routes.is_empty() {
        d.warning("routes", "no routes: every request will get 404 no_route");
    }
    for (name, _) in &raw_pools {
        if !routes.iter().any(|r| &r.pool == name) && !d.has_errors() {
            d.warning(
                format!("pools.{}", key_seg(name)),
                "pool is not used by any route",
            );
        }
    }
    if let Some(s) = &server {
        if s.listen == s.admin_listen {
            d.error("server.admin_listen", "must differ from server.listen");
        }
    }

    if d.has_errors() {
        return None;
    }
    Some(Config {
        source: None,
        stamp: None,
        server: server?,
        pools,
        groups,
        routes,
        schedules,
        log: log?,
        start_traces: raw_tracing.start.unwrap_or(false),
    })
}

/// Decode one table into `T`, reporting every bad key. If the whole table fails, each leaf
/// (a non-table value, with the keys leading to it) is decoded alone, so an unknown key deep
/// in `match` does not hide a bad regex beside it; the good leaves are then decoded together.
/// Raw types have only optional fields, so a lone leaf fails only for its own fault.
pub(super) fn decode<T: DeserializeOwned + Default>(
    value: &toml::Value,
    path: &str,
    d: &mut Diags,
) -> T {
    let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
        Ok(t) => return t,
        Err(e) => e,
    };
    if !matches!(value, toml::Value::Table(_)) {
        report(path, err, d);
        return T::default();
    }
    let mut leaves = Vec::new();
    collect_leaves(value, &mut Vec::new(), &mut leaves);
    let mut good = toml::Value::Table(toml::Table::new());
    let mut reported: Vec<String> = Vec::new();
    for (keys, leaf) in leaves {
        let mut alone = toml::Value::Table(toml::Table::new());
        insert_at(&mut alone, &keys, leaf.clone());
        match serde_path_to_error::deserialize::<_, T>(alone) {
            Ok(_) => insert_at(&mut good, &keys, leaf),
            Err(e) => {
                let key = format!("{}{}", e.path(), e.inner().message());
                if !reported.contains(&key) {
                    reported.push(key);
                    report(path, e, d);
                }
            }
        }
    }
    serde_path_to_error::deserialize::<_, T>(good).unwrap_or_default()
}

fn collect_leaves(
    v: &toml::Value,
    keys: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, toml::Value)>,
) {
    match v {
        toml::Value::Table(t) if !t.is_empty() => {
            for (k, child) in t {
                keys.push(k.clone());
                collect_leaves(child, keys, out);
                keys.pop();
            }
        }
        _ => out.push((keys.clone(), v.clone())),
    }
}

fn insert_at(root: &mut toml::Value, keys: &[String], leaf: toml::Value) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut cur = root;
    for k in parents {
        let toml::Value::Table(t) = cur else { return };
        cur = t
            .entry(k.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    }
    if let toml::Value::Table(t) = cur {
        t.insert(last.clone(), leaf);
    }
}

fn report(base: &str, e: serde_path_to_error::Error<toml::de::Error>, d: &mut Diags) {
    let mut path = base.to_string();
    for seg in e.path().iter() {
        use serde_path_to_error::Segment;
        match seg {
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                path.push('.');
                path.push_str(&key_seg(key));
            }
            Segment::Unknown => {}
        }
    }
    let msg = e.inner().message().to_string();
    // serde names the unknown key only in the message; put it in the path too.
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some(end) = rest.find('`') {
            let key = key_seg(&rest[..end]);
            // serde_path_to_error's path may already end with the key.
            if !path.ends_with(&format!(".{key}")) {
                path.push('.');
                path.push_str(&key);
            }
            let expected = rest[end + 1..].trim_start_matches(", ");
            d.error(path, format!("unknown key `{}`, {expected}", &rest[..end]));
            return;
        }
    }
    d.error(path, msg);
}

fn validate_log(raw: &RawLog, base_dir: &Path, d: &mut Diags) -> Option<LogSpec> {
    let sample = raw.sample.unwrap_or(0.01);
    let sample_ok = (0.0..=1.0).contains(&sample);
    if !sample_ok {
        d.error(
            "log.sample",
            format!("{sample} is out of range: expected 0 to 1"),
        );
    }
    let max_size = match raw.max_size.as_deref() {
        None => Some(100 << 20),
        Some(s) => match super::units::parse_size(s) {
            Ok(n) if (4096..=1 << 40).contains(&n) => Some(n),
            Ok(_) => {
                d.error(
                    "log.max_size",
                    format!("{s:?} is out of range: expected 4KiB to 1TiB"),
                );
                None
            }
            Err(e) => {
                d.error("log.max_size", e);
                None
            }
        },
    };
    let max_files = int_in(raw.max_files, 5, 0, 1000, "log.max_files", d);
    let eps = int_in(
        raw.errors_per_second,
        100,
        1,
        1_000_000,
        "log.errors_per_second",
        d,
    );
    let buffer = int_in(raw.buffer, 8192, 16, 1_000_000, "log.buffer", d);
    let file = raw
        .file
        .as_deref()
        .filter(|f| *f != "-")
        .map(|f| base_dir.join(f));
    if !sample_ok {
        return None;
    }
    Some(LogSpec {
        sample,
        file,
        max_size: max_size?,
        max_files: max_files? as usize,
        errors_per_second: eps? as u32,
        buffer: buffer? as usize,
    })
}

/// `admin_token_file`: one token per line, `NAME:TOKEN` (the name shows in audit lines) or a
/// bare `TOKEN` (named "admin"); blank lines and `#` comments are skipped.
fn admin_tokens(file: &str, base_dir: &Path, d: &mut Diags) -> Option<Vec<(String, String)>> {
    let path = base_dir.join(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            d.error(
                "server.admin_token_file",
                format!("cannot read {}: {e}", path.display()),
            );
            return None;
        }
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, token) = line.split_once(':').unwrap_or(("admin", line));
        let (name, token) = (name.trim(), token.trim());
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            d.error(
                "server.admin_token_file",
                format!(
                    "{} line {}: a token needs at least 16 printable characters",
                    path.display(),
                    n + 1
                ),
            );
            return None;
        }
        out.push((name.to_string(), token.to_string()));
    }
    if out.is_empty() {
        d.error(
            "server.admin_token_file",
            format!("{} holds no token", path.display()),
        );
        return None;
    }
    Some(out)
}

fn validate_server(raw: &RawServer, base_dir: &Path, d: &mut Diags) -> Option<ServerSpec> {
    let listen = socket_addr(
        raw.listen.as_deref().unwrap_or("0.0.0.0:8080"),
        "server.listen",
        d,
    );
    let admin = socket_addr(
        raw.admin_listen.as_deref().unwrap_or("127.0.0.1:9901"),
        "server.admin_listen",
        d,
    );
    let tokens = match raw.admin_token_file.as_deref() {
        None => Some(Vec::new()),
        Some(f) => admin_tokens(f, base_dir, d),
    };
    if let (Some(a), Some(t)) = (admin, &tokens) {
        if !a.ip().is_loopback() {
            if t.is_empty() {
                d.error(
                    "server.admin_listen",
                    "not a loopback address and no `admin_token_file`: anyone who can reach it could switch routes off; set a token file or listen on 127.0.0.1",
                );
            } else {
                d.warning(
                    "server.admin_listen",
                    "not a loopback address: /metrics and /admin/status are readable by anyone who can reach it (changes need the token)",
                );
            }
        }
    }
    let threads = int_in(raw.threads, 2, 1, 256, "server.threads", d);
    // Default: one socket per admin port, so two levees on one host do not collide.
    let upgrade_sock = match raw.upgrade_sock.as_deref() {
        Some(p) => base_dir.join(p),
        None => std::path::PathBuf::from(format!(
            "/tmp/levee-upgrade-{}.sock",
            admin.map_or(0, |a| a.port())
        )),
    };
    let state_file = raw.state_file.as_deref().map(|p| base_dir.join(p));
    if let Some(f) = &state_file {
        state_file_check(f, d);
    }
    let drain_timeout = duration_in(
        raw.drain_timeout.as_deref(),
        Duration::from_secs(10),
        Duration::from_secs(1),
        Duration::from_secs(600),
        "server.drain_timeout",
        d,
    );
    let mut trusted_proxies = Vec::new();
    for (i, c) in raw.trusted_proxies.iter().flatten().enumerate() {
        match Cidr::parse(c) {
            Ok(c) => trusted_proxies.push(c),
            Err(e) => d.error(format!("server.trusted_proxies[{i}]"), e),
        }
    }
    let size = |v: Option<&str>, default: u64, min: u64, max: u64, path: &str, d: &mut Diags| {
        size_in(v, default, min, max, path, d)
    };
    let max_request_headers = int_in(
        raw.max_request_headers,
        100,
        8,
        256,
        "server.max_request_headers",
        d,
    );
    let max_request_head = size(
        raw.max_request_head.as_deref(),
        32 << 10,
        1 << 10,
        1 << 20,
        "server.max_request_head",
        d,
    );
    let max_request_line = size(
        raw.max_request_line.as_deref(),
        8 << 10,
        256,
        1 << 20,
        "server.max_request_line",
        d,
    );
    let max_body = size(
        raw.max_body.as_deref(),
        16 << 20,
        0,
        1 << 40,
        "server.max_body",
        d,
    );
    let max_requests = int_in(
        raw.max_requests_per_connection,
        1000,
        1,
        10_000_000,
        "server.max_requests_per_connection",
        d,
    );
    let max_connections = int_in(
        raw.max_connections,
        50_000,
        1,
        10_000_000,
        "server.max_connections",
        d,
    );
    // The connection timeouts: (value, default s, min, max s, key).
    let ms100 = Duration::from_millis(100);
    let one = Duration::from_secs(1);
    let [head_timeout, body_timeout, body_deadline, keepalive] = [
        (
            &raw.request_head_timeout,
            10,
            ms100,
            300,
            "request_head_timeout",
        ),
        (&raw.body_read_timeout, 30, ms100, 3600, "body_read_timeout"),
        (
            &raw.request_body_timeout,
            120,
            one,
            86_400,
            "request_body_timeout",
        ),
        (&raw.keepalive_timeout, 60, one, 3600, "keepalive_timeout"),
    ]
    .map(|(v, default, min, max, key)| {
        duration_in(
            v.as_deref(),
            Duration::from_secs(default),
            min,
            Duration::from_secs(max),
            &format!("server.{key}"),
            d,
        )
    });
    let max_response_headers = int_in(
        raw.max_response_headers,
        100,
        8,
        256,
        "server.max_response_headers",
        d,
    );
    let max_response_head = size(
        raw.max_response_head.as_deref(),
        64 << 10,
        1 << 10,
        1 << 20,
        "server.max_response_head",
        d,
    );
    Some(ServerSpec {
        limits: EdgeLimits {
            max_response_headers: max_response_headers? as usize,
            max_response_head: max_response_head?,
            max_connections: max_connections? as usize,
            request_head_timeout: head_timeout?,
            body_read_timeout: body_timeout?,
            request_body_timeout: body_deadline?,
            keepalive_timeout: keepalive?,
            max_request_headers: max_request_headers? as usize,
            max_request_head: max_request_head?,
            max_request_line: max_request_line? as usize,
            max_body: max_body?,
            max_requests_per_connection: max_requests? as u32,
        },
        trusted_proxies,
        upgrade_sock,
        state_file,
        drain_timeout: drain_timeout?,
        listen: listen?,
        admin_listen: admin?,
        threads: threads? as usize,
        admin_tokens: tokens?,
    })
}

/// `state_file`: its folder must exist (levee writes the file there on every switch change).
/// An existing file levee cannot read back is a warning, not an error: levee still starts
/// (a proxy that will not start is worse), without the saved switches, and says so.
fn state_file_check(f: &std::path::Path, d: &mut Diags) {
    let dir = f.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir.filter(|dir| !dir.is_dir()) {
        d.error(
            "server.state_file",
            format!("folder {} does not exist", dir.display()),
        );
        return;
    }
    if f.is_dir() {
        d.error("server.state_file", format!("{} is a folder", f.display()));
        return;
    }
    let folder = dir.unwrap_or(std::path::Path::new("."));
    if !writable(folder) {
        d.warning(
            "server.state_file",
            format!(
                "folder {} is not writable by this user: switches would apply but not be saved",
                folder.display()
            ),
        );
    }
    let probe = crate::switches::Switches::default();
    if let Err(e) = probe.restore(f, chrono::Utc::now(), |_| true) {
        d.warning(
            "server.state_file",
            format!("{e}: levee would start without the switches it saved"),
        );
    }
}

/// Whether this process may create files in `dir` (`access(2)` with `W_OK`).
fn writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

fn socket_addr(s: &str, path: &str, d: &mut Diags) -> Option<SocketAddr> {
    match s.parse::<SocketAddr>() {
        Ok(a) if a.port() == 0 => {
            d.error(
                path,
                format!("port 0 in {s:?}: name the port to listen on (clients and checks need to know it)"),
            );
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            d.error(
                path,
                format!("bad address {s:?}: expected IP:PORT such as \"127.0.0.1:8080\""),
            );
            None
        }
    }
}

/// An integer in `[min, max]`, `default` when absent.
pub(super) fn int_in(
    v: Option<i64>,
    default: i64,
    min: i64,
    max: i64,
    path: &str,
    d: &mut Diags,
) -> Option<i64> {
    let v = v.unwrap_or(default);
    if v < min || v > max {
        d.error(
            path,
            format!("{v} is out of range: expected {min} to {max}"),
        );
        return None;
    }
    Some(v)
}

/// A size string (`"64KiB"`) in `[min, max]` bytes, `default` when absent.
pub(super) fn size_in(
    v: Option<&str>,
    default: u64,
    min: u64,
    max: u64,
    path: &str,
    d: &mut Diags,
) -> Option<u64> {
    let Some(s) = v else { return Some(default) };
    match super::units::parse_size(s) {
        Ok(n) if n < min || n > max => {
            d.error(
                path,
                format!("{s:?} is out of range: expected {min} to {max} bytes"),
            );
            None
        }
        Ok(n) => Some(n),
        Err(e) => {
            d.error(path, e);
            None
        }
    }
}

/// A duration string in `[min, max]`, `default` when absent.
pub(super) fn duration_in(
    v: Option<&str>,
    default: Duration,
    min: Duration,
    max: Duration,
    path: &str,
    d: &mut Diags,
) -> Option<Duration> {
    let Some(s) = v else { return Some(default) };
    match parse_duration(s) {
        Ok(dur) if dur < min || dur > max => {
            d.error(
                path,
                format!("{s:?} is out of range: expected {min:?} to {max:?}"),
            );
            None
        }
        Ok(dur) => Some(dur),
        Err(e) => {
            d.error(path, e);
            None
        }
    }
}

/// Names of pools and routes appear in metric labels, URLs and headers: keep them plain.
pub(super) fn check_name(name: &str, path: &str, d: &mut Diags) -> bool {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        d.error(
            path,
            format!("bad name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
        );
    }
    ok
}

fn validate_pool(name: &str, raw: &RawPool, d: &mut Diags) -> Option<PoolSpec> {
    let base = format!("pools.{}", key_seg(name));
    let p = |k: &str| format!("{base}.{k}");
    let name_ok = check_name(name, &base, d);

    let mut endpoints = Vec::new();
    match &raw.endpoints {
        None => d.error(
            p("endpoints"),
            "missing: a pool needs at least one endpoint",
        ),
        Some(list) if list.is_empty() => {
            d.error(p("endpoints"), "empty: a pool needs at least one endpoint")
        }
        Some(list) => {
            for (i, ep) in list.iter().enumerate() {
                let path = format!("{base}.endpoints[{i}]");
                if list[..i].contains(ep) {
                    d.error(path, format!("duplicate endpoint {ep:?}"));
                    continue;
                }
                match resolve(ep) {
                    Ok(addr) => endpoints.push((ep.clone(), addr)),
                    Err(e) => d.error(path, e),
                }
            }
        }
    }

    let max_inflight = int_in(raw.max_inflight, 64, 1, 1_000_000, &p("max_inflight"), d);
    let queue = raw.queue.as_ref();
    let queue_max = int_in(
        queue.and_then(|q| q.max),
        max_inflight.unwrap_or(64),
        0,
        1_000_000,
        &p("queue.max"),
        d,
    );
    let ms = Duration::from_millis;
    let hour = Duration::from_secs(3600);
    let queue_timeout = duration_in(
        queue.and_then(|q| q.timeout.as_deref()),
        ms(100),
        ms(1),
        Duration::from_secs(60),
        &p("queue.timeout"),
        d,
    );
    let connect_timeout = duration_in(
        raw.connect_timeout.as_deref(),
        Duration::from_secs(1),
        ms(1),
        Duration::from_secs(60),
        &p("connect_timeout"),
        d,
    );
    let request_timeout = duration_in(
        raw.request_timeout.as_deref(),
        Duration::from_secs(15),
        ms(1),
        hour,
        &p("request_timeout"),
        d,
    );

    let health_check = match &raw.health_check {
        None => Some(None),
        Some(h) => validate_health(h, &format!("{base}.health_check"), d).map(Some),
    };

    let adaptive = validate_adaptive(raw.adaptive.as_ref(), max_inflight, &p("adaptive"), d);
    let slow_start = duration_in(
        raw.slow_start.as_deref(),
        Duration::from_secs(10),
        Duration::ZERO,
        Duration::from_secs(600),
        &p("slow_start"),
        d,
    );

    if !name_ok || endpoints.len() != raw.endpoints.as_ref().map_or(usize::MAX, |e| e.len()) {
        return None;
    }
    Some(PoolSpec {
        name: name.to_string(),
        endpoints,
        max_inflight: max_inflight? as usize,
        queue_max: queue_max? as usize,
        queue_timeout: queue_timeout?,
        connect_timeout: connect_timeout?,
        request_timeout: request_timeout?,
        health_check: health_check?,
        adaptive: adaptive?,
        group: raw.group.clone(),
        slow_start: slow_start?,
    })
}

fn validate_health(h: &RawHealthCheck, base: &str, d: &mut Diags) -> Option<HealthCheckSpec> {
    let p = |k: &str| format!("{base}.{k}");
    let path = h.path.clone().unwrap_or_else(|| "/healthz".to_string());
    let path_ok = path.starts_with('/') && !path.bytes().any(|b| b <= b' ' || b == 0x7f);
    if !path_ok {
        d.error(
            p("path"),
            format!("bad path {path:?}: must start with '/' and hold no spaces"),
        );
    }
    let ms = Duration::from_millis;
    let interval = duration_in(
        h.interval.as_deref(),
        Duration::from_secs(2),
        ms(10),
        Duration::from_secs(3600),
        &p("interval"),
        d,
    );
    let timeout = duration_in(
        h.timeout.as_deref(),
        Duration::from_secs(1),
        ms(1),
        Duration::from_secs(60),
        &p("timeout"),
        d,
    );
    let healthy = int_in(h.healthy_threshold, 2, 1, 100, &p("healthy_threshold"), d);
    let unhealthy = int_in(
        h.unhealthy_threshold,
        2,
        1,
        100,
        &p("unhealthy_threshold"),
        d,
    );
    if let (Some(i), Some(t)) = (interval, timeout) {
        if t > i {
            d.warning(
                p("timeout"),
                "longer than the interval: checks of a hanging endpoint will overlap",
            );
        }
    }
    if !path_ok {
        return None;
    }
    Some(HealthCheckSpec {
        path,
        interval: interval?,
        timeout: timeout?,
        host: h.host.clone(),
        healthy_threshold: healthy? as usize,
        unhealthy_threshold: unhealthy? as usize,
    })
}

fn resolve(ep: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = ep.parse::<SocketAddr>() {
        return Ok(a);
    }
    if !ep.contains(':') {
        return Err(format!("bad endpoint {ep:?}: expected HOST:PORT"));
    }
    match ep.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("endpoint {ep:?} resolves to no address")),
        Err(e) => Err(format!("cannot resolve endpoint {ep:?}: {e}")),
    }
}
