//! `levee check` end to end: the real binary on the fixture configs of `tests/fixtures/`.
//! Each test asserts the exit code and the exact diagnostics that matter to an SRE reading
//! them: the path in the config, the message, and line:column where the parser gives one
//! (DESIGN.md §1: every error in one run, each with its path; §5: non-zero exit on any error).

use std::path::Path;
use std::process::Command;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Diagnostic lines (errors and warnings) on stderr.
    fn diag_lines(&self, severity: &str) -> Vec<&str> {
        let tag = format!(" {severity}: ");
        let tag_no_pos = format!(":{severity}: ");
        self.stderr
            .lines()
            .filter(|l| l.contains(&tag) || l.contains(&tag_no_pos))
            .collect()
    }

    fn errors(&self) -> Vec<&str> {
        self.diag_lines("error")
    }

    fn warnings(&self) -> Vec<&str> {
        self.diag_lines("warning")
    }

    #[track_caller]
    fn has_line(&self, line: &str) {
        assert!(
            self.stderr.lines().any(|l| l == line),
            "stderr lacks the line\n  {line}\nstderr was:\n{}",
            self.stderr
        );
    }

    /// A diagnostic line that starts with `prefix` and contains every one of `parts`.
    #[track_caller]
    fn has_diag(&self, prefix: &str, parts: &[&str]) {
        let found = self
            .stderr
            .lines()
            .any(|l| l.starts_with(prefix) && parts.iter().all(|p| l.contains(p)));
        assert!(
            found,
            "stderr lacks a line starting with\n  {prefix}\ncontaining {parts:?}\nstderr was:\n{}",
            self.stderr
        );
    }
}

/// Run `levee check -c FILE` from the crate root, so paths in the output are as given.
fn check(file: &str) -> Out {
    let root = env!("CARGO_MANIFEST_DIR");
    assert!(
        Path::new(root).join(file).is_file(),
        "fixture {file} does not exist"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_levee"))
        .args(["check", "-c", file])
        .current_dir(root)
        .env_remove("LEVEE_LOG")
        .output()
        .expect("run levee");
    Out {
        code: out.status.code().expect("levee exited by signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The config is refused with exactly `n` errors, the count line is printed and stdout
/// does not claim success.
#[track_caller]
fn assert_refused(out: &Out, file: &str, n: usize) {
    assert_eq!(out.code, 1, "exit code; stderr:\n{}", out.stderr);
    out.has_line(&format!("{file}: {n} error(s); config refused"));
    assert_eq!(
        out.errors().len(),
        n,
        "number of error lines; stderr:\n{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("ok"),
        "refused config must not print ok: {}",
        out.stdout
    );
}

const E: &str = "tests/fixtures/errors";

#[test]
fn unknown_pool() {
    let f = format!("{E}/unknown_pool.toml");
    let out = check(&f);
    assert_refused(&out, &f, 1);
    out.has_line(&format!(
        r#"{f}:16:1: error: routes[1].pool: unknown pool "serch" (known: search, web)"#
    ));
}

#[test]
fn duplicate_route() {
    let f = format!("{E}/duplicate_route.toml");
    let out = check(&f);
    assert_refused(&out, &f, 1);
    out.has_line(&format!(
        r#"{f}:15:1: error: routes[1].name: duplicate route name "search" (also routes[0])"#
    ));
}

#[test]
fn bad_regex_in_path_and_query() {
    let f = format!("{E}/bad_regex.toml");
    let out = check(&f);
    assert_refused(&out, &f, 2);
    // path_regex = "^/p/([0-9]+$" on line 13.
    out.has_diag(
        &format!("{f}:13:1: error: routes[0].match.path_regex: bad regex \"^/p/([0-9]+$\": "),
        &["unclosed group"],
    );
    // query = { q = { regex = "sku-[0-9" } } on line 20: `regex` starts at column 17.
    out.has_diag(
        &format!("{f}:20:17: error: routes[1].match.query.q.regex: bad regex \"sku-[0-9\": "),
        &["unclosed character class"],
    );
}

#[test]
fn missing_one_of_file() {
    let f = format!("{E}/missing_file.toml");
    let out = check(&f);
    assert_refused(&out, &f, 1);
    // Resolved against the config's folder, not the working directory.
    out.has_diag(
        &format!("{f}:11:17: error: routes[0].match.query.q.one_of_file: "),
        &["cannot read tests/fixtures/errors/no-such-list.txt"],
    );
}

#[test]
fn state_file_in_a_missing_folder() {
    let f = format!("{E}/state_file.toml");
    let out = check(&f);
    assert_refused(&out, &f, 1);
    out.has_diag(
        &format!("{f}:3:1: error: server.state_file: "),
        &["folder tests/fixtures/errors/no-such-folder does not exist"],
    );
}

#[test]
fn bad_durations() {
    let f = format!("{E}/bad_duration.toml");
    let out = check(&f);
    assert_refused(&out, &f, 2);
    out.has_line(&format!(
        r#"{f}:4:1: error: pools.checkout.connect_timeout: bad duration "250": missing unit (use ms, s, m or h, e.g. "250ms")"#
    ));
    out.has_line(&format!(
        r#"{f}:5:1: error: pools.checkout.request_timeout: bad duration "3 sec": unknown unit " sec" (use ms, s, m or h)"#
    ));
}

#[test]
fn zero_and_out_of_range_numbers() {
    let f = format!("{E}/zero_or_out_of_range.toml");
    let out = check(&f);
    assert_refused(&out, &f, 3);
    out.has_line(&format!(
        "{f}:3:1: error: server.threads: 1000 is out of range: expected 1 to 256"
    ));
    out.has_line(&format!(
        "{f}:4:1: error: server.listen: port 0 in \"0.0.0.0:0\": name the port to listen on (clients and checks need to know it)"
    ));
    out.has_line(&format!(
        "{f}:8:1: error: pools.checkout.max_inflight: 0 is out of range: expected 1 to 1000000"
    ));
}

#[test]
fn unknown_keys_top_level_and_in_route() {
    let f = format!("{E}/unknown_key.toml");
    let out = check(&f);
    assert_refused(&out, &f, 2);
    // `[pool.web]`: the key `pool` starts at column 2, after the bracket.
    out.has_line(&format!(
        "{f}:2:2: error: pool: unknown key `pool`, expected one of `server`, `log`, `tracing`, `pools`, `groups`, `routes`, `schedules`"
    ));
    // The path is checked only up to the key (see `unknown_key_path_names_key_once` below).
    out.has_diag(
        &format!("{f}:11:1: error: routes[0].prority"),
        &["unknown key `prority`, expected one of `name`, `pool`, `priority`, `cost`, `match`"],
    );
}

/// The path of an unknown key should name the key once: `routes[0].prority`, not
/// `routes[0].prority.prority` (a regression test: serde_path_to_error already ends its path
/// with the unknown key, and `report` once appended it again).
#[test]
fn unknown_key_path_names_key_once() {
    let f = format!("{E}/unknown_key.toml");
    let out = check(&f);
    out.has_diag(
        &format!("{f}:11:1: error: routes[0].prority: unknown key `prority`, expected one of `name`, `pool`, `priority`, `cost`, `match`"),
        &[],
    );
}

/// An unknown key inside a nested table (`[routes.match]`) must not hide the other mistakes
/// in that table (a regression test: the whole `match` table was once dropped after the
/// unknown key, so the bad regex and the empty `methods` went unreported).
#[test]
fn unknown_key_in_nested_table_hides_nothing() {
    let f = format!("{E}/unknown_key_nested.toml");
    let out = check(&f);
    assert_refused(&out, &f, 3);
    out.has_diag(
        &format!("{f}:11:1: error: routes[0].match.path_prefx"),
        &["unknown key `path_prefx`"],
    );
    out.has_diag(
        &format!("{f}:12:1: error: routes[0].match.path_regex: bad regex \"^/p/([0-9]+$\": "),
        &["unclosed group"],
    );
    out.has_line(&format!(
        "{f}:13:1: error: routes[0].match.methods: empty: leave the key out to match any method"
    ));
}

#[test]
fn unknown_keys_and_cache_mistakes_are_refused() {
    let f = format!("{E}/unknown_keys.toml");
    let out = check(&f);
    assert_refused(&out, &f, 8);
    out.has_diag(
        &format!("{f}:7:1: error: log.format"),
        &["unknown key `format`"],
    );
    out.has_diag(
        &format!("{f}:4:1: error: server.admin_tokens"),
        &["unknown key `admin_tokens`"],
    );
    out.has_diag(
        &format!("{f}:11:1: error: pools.search.adaptive"),
        &["expected true, false or a table of tuning keys, found string"],
    );
    out.has_diag(
        &format!("{f}:23:1: error: routes[0].cache.ttl_default"),
        &["unknown key `ttl_default`"],
    );
    out.has_diag(
        &format!("{f}:19:1: error: routes[0].cache.max_size"),
        &["unknown unit \"MB\""],
    );
    out.has_diag(
        &format!("{f}:21:1: error: routes[0].cache.stale_if_error"),
        &["bad duration \"forever\""],
    );
    out.has_diag(
        &format!("{f}:22:29: error: routes[0].cache.key_headers[1]"),
        &["listed twice"],
    );
    out.has_diag(
        &format!("{f}:29:1: error: routes[1].degrade.mode"),
        &["needs a cache on the route"],
    );
}

/// Found by `cargo fuzz run config`: this file made toml_edit 0.23 panic inside `levee check`.
#[test]
fn a_file_that_crashed_the_toml_parser_is_refused_cleanly() {
    let f = format!("{E}/fuzz_toml_edit_panic.toml");
    let out = check(&f);
    assert_refused(&out, &f, 1);
    out.has_line(&format!("{f}:1:2: error: extra `=`, expected nothing"));
}

#[test]
fn syntax_error_has_line_and_column() {
    let f = format!("{E}/syntax_error.toml");
    let out = check(&f);
    assert_refused(&out, &f, 1);
    // connect_timeout = "250ms   <- unterminated string; the parser stops at the line end.
    out.has_line(&format!(
        "{f}:4:25: error: invalid basic string, expected `\"`"
    ));
}

#[test]
fn missing_required_keys() {
    let f = format!("{E}/missing_required.toml");
    let out = check(&f);
    assert_refused(&out, &f, 2);
    // A missing key points at the table that should hold it: `web` in `[pools.web]`.
    out.has_line(&format!(
        "{f}:2:8: error: pools.web.endpoints: missing: a pool needs at least one endpoint"
    ));
    // ... and the route's `[[routes]]` line.
    out.has_line(&format!(
        "{f}:5:1: error: routes[0].pool: missing: every route needs a pool"
    ));
}

#[test]
fn value_matcher_with_two_kinds() {
    let f = format!("{E}/bad_value_matcher.toml");
    let out = check(&f);
    assert_refused(&out, &f, 1);
    // query = { q = { equals = ..., one_of = [...] } }: `q` is at column 11.
    out.has_line(&format!(
        "{f}:10:11: error: routes[0].match.query.q: give exactly one of `equals`, `one_of`, `one_of_file`, `regex`, `present`"
    ));
}

#[test]
fn multi_error_reports_everything_in_one_run() {
    let f = format!("{E}/multi_error.toml");
    let out = check(&f);
    assert_refused(&out, &f, 5);
    // Unknown key in [server].
    out.has_diag(
        &format!("{f}:5:1: error: server.thread"),
        &["unknown key `thread`, expected one of `listen`, `admin_listen`, `threads`"],
    );
    // Bad value inside an inline table.
    out.has_line(&format!(
        r#"{f}:10:21: error: pools.search.queue.timeout: bad duration "fast": expected a number before the unit"#
    ));
    // Broken reference.
    out.has_line(&format!(
        r#"{f}:17:1: error: routes[0].pool: unknown pool "serch" (known: search, web)"#
    ));
    // Bad enum value in the same route: one error per route does not stop the others.
    out.has_line(&format!(
        r#"{f}:18:1: error: routes[0].priority: unknown priority "urgent": expected critical, high, normal, low or sheddable"#
    ));
    // Bad regex in a header matcher, still in the same route.
    out.has_diag(
        &format!(
            "{f}:21:26: error: routes[0].match.headers.x-client.regex: bad regex \"(app|web\": "
        ),
        &["unclosed group"],
    );
}

#[test]
fn shadowed_route_warns_but_passes() {
    let f = "tests/fixtures/warnings/shadowed_route.toml";
    let out = check(f);
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    assert!(out.errors().is_empty(), "stderr:\n{}", out.stderr);
    assert_eq!(out.warnings().len(), 1, "stderr:\n{}", out.stderr);
    out.has_line(&format!(
        r#"{f}:14:1: warning: routes[1]: route "checkout" can never match: routes[0] ("web") comes first and catches every request it would"#
    ));
    assert_eq!(
        out.stdout.trim_end(),
        format!("{f}: ok (2 routes, 2 pools, 1 warnings)")
    );
}

#[test]
fn minimal_config_passes_clean() {
    let f = "tests/fixtures/ok/minimal.toml";
    let out = check(f);
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    assert!(
        out.errors().is_empty() && out.warnings().is_empty(),
        "stderr:\n{}",
        out.stderr
    );
    assert_eq!(
        out.stdout.trim_end(),
        format!("{f}: ok (1 routes, 1 pools)")
    );
}

/// Every shipped example config passes `levee check` without errors or warnings.
#[test]
fn every_conf_example_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(root.join("conf"))
        .expect("read conf/")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.ends_with(".toml").then(|| format!("conf/{name}"))
        })
        .collect();
    files.sort();
    for required in ["conf/demo.toml", "conf/levee.toml"] {
        assert!(
            files.iter().any(|f| f == required),
            "{required} missing from {files:?}"
        );
    }
    for f in &files {
        let out = check(f);
        assert_eq!(out.code, 0, "{f}: stderr:\n{}", out.stderr);
        assert!(
            out.errors().is_empty() && out.warnings().is_empty(),
            "{f}: stderr:\n{}",
            out.stderr
        );
        assert!(
            out.stdout.starts_with(&format!("{f}: ok (")),
            "{f}: stdout: {}",
            out.stdout
        );
    }
}

/// `conf/levee.toml` really uses the broad-category list next to it, and that list has
/// values (an empty list would only warn, and the route would never match).
#[test]
fn levee_example_uses_the_category_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = std::fs::read_to_string(root.join("conf/levee.toml")).expect("read levee.toml");
    assert!(cfg.contains(r#"one_of_file = "broad-categories.txt""#));
    let list = std::fs::read_to_string(root.join("conf/broad-categories.txt")).expect("read list");
    let values = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert!(values >= 12, "only {values} categories");
    let out = check("conf/levee.toml");
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    assert!(
        out.stdout.contains("ok (10 routes, 4 pools)"),
        "{}",
        out.stdout
    );
}

#[test]
fn protection_blocks_report_every_bad_key() {
    let f = format!("{E}/protection.toml");
    let out = check(&f);
    assert_refused(&out, &f, 16);
    for line in [
        "8:1: error: routes[0].shadow: invalid type: string \"yes\", expected a boolean",
        "10:1: error: routes[0].rate_limit.rps: 0 is out of range: expected more than 0, up to 10000000",
        "11:1: error: routes[0].rate_limit.burst: 0 is out of range: expected 1 to 1000000",
        "13:1: error: routes[0].client_rate_limit.key: bad client key \"session\": expected \"ip\", \"header:NAME\" or \"cookie:NAME\"",
        "14:1: error: routes[0].client_rate_limit.rps: -2 is out of range: expected more than 0, up to 10000000",
        "15:1: error: routes[0].client_rate_limit.max_keys: 1 is out of range: expected 16 to 10000000",
        "17:1: error: routes[0].circuit_breaker.window: bad duration \"10\": missing unit (use ms, s, m or h, e.g. \"250ms\")",
        "18:1: error: routes[0].circuit_breaker.min_requests: 0 is out of range: expected 1 to 1000000",
        "19:1: error: routes[0].circuit_breaker.error_ratio: 1.5 is out of range: expected a share above 0 and at most 1",
        "20:1: error: routes[0].circuit_breaker.slow_ratio: has no effect without `slow_call` (the duration above which a call counts as slow)",
        "21:1: error: routes[0].circuit_breaker.open_for: \"1ms\" is out of range: expected 10ms to 3600s",
        "22:1: error: routes[0].circuit_breaker.probes: 0 is out of range: expected 1 to 1000",
        "24:1: error: routes[0].degrade.status: 99 is out of range: expected 200 to 599",
        "25:1: error: routes[0].degrade.retry_after: bad duration \"soon\": expected a number before the unit",
    ] {
        out.has_line(&format!("{f}:{line}"));
    }
    out.has_diag(
        &format!("{f}:26:1: error: routes[0].degrade.body_file: "),
        &["cannot read tests/fixtures/errors/fallback/nope.json"],
    );
    out.has_diag(
        &format!("{f}:27:1: error: routes[0].degrade.mode"),
        &["unknown mode \"cached\": expected \"body\" or \"stale\""],
    );
}

#[test]
fn schedules_in_the_past_or_disagreeing_warn() {
    let f = "tests/fixtures/warnings/schedules.toml";
    let out = check(f);
    assert_eq!(out.code, 0, "stderr:\n{}", out.stderr);
    assert_eq!(out.warnings().len(), 2, "stderr:\n{}", out.stderr);
    out.has_line(&format!(
        r#"{f}:9:1: warning: schedules[0]: schedule "last-year" ended at 2025-11-11 02:00:00 +09:00: it will never apply"#
    ));
    out.has_line(&format!(
        r#"{f}:21:1: warning: schedules[2]: overlaps schedules[1] ("sale-open") and sets route "search" to degrade where it sets off: while both apply, the one that started later wins"#
    ));
}

#[test]
fn schedule_errors_and_a_public_admin_without_token() {
    let f = format!("{E}/schedules.toml");
    let out = check(&f);
    assert_refused(&out, &f, 5);
    for line in [
        "3:1: error: server.admin_listen: not a loopback address and no `admin_token_file`: anyone who can reach it could switch routes off; set a token file or listen on 127.0.0.1",
        "14:1: error: schedules[0].from: bad time \"2026-11-11 00:00\" (premature end of input): expected RFC 3339 with offset, e.g. \"2026-11-11T00:00:00+09:00\"",
        "16:31: error: schedules[0].switches.search: unknown state \"sideways\": expected on, off or degrade",
        "16:14: error: schedules[0].switches.serch: unknown route \"serch\"",
        "21:1: error: schedules[1].until: must be after `from`",
    ] {
        out.has_line(&format!("{f}:{line}"));
    }
}

#[test]
fn group_errors() {
    let f = format!("{E}/groups.toml");
    let out = check(&f);
    assert_refused(&out, &f, 3);
    for line in [
        "2:9: error: groups.search: \"search\" is also a pool: group and pool names share the `pool` metric label",
        "3:1: error: groups.search.max_inflight: 0 is out of range: expected 1 to 1000000",
        "7:1: error: pools.search.group: unknown group \"db\" (known: search)",
    ] {
        out.has_line(&format!("{f}:{line}"));
    }
}
