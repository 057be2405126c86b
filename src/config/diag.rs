//! Config diagnostics: every problem found in one load, each with its path in the config
//! (`routes[3].pool`), the line and column where the TOML parser places it, and a severity.
//! `levee check`, `POST /admin/reload` and startup all print these.

use std::fmt;

/// How bad a diagnostic is: errors refuse the config, warnings are printed and accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a config file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Path of the offending key, e.g. `routes[3].match.query.q.regex`.
    pub path: String,
    pub message: String,
    /// 1-based line and column, where the parser can place the path.
    pub line_col: Option<(usize, usize)>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if let Some((l, c)) = self.line_col {
            write!(f, "{l}:{c}: ")?;
        }
        if self.path.is_empty() {
            write!(f, "{sev}: {}", self.message)
        } else {
            write!(f, "{sev}: {}: {}", self.path, self.message)
        }
    }
}

/// Collects diagnostics during one load and places them in the source text.
pub struct Diags<'a> {
    items: Vec<Diagnostic>,
    spans: Option<toml_edit::Document<&'a str>>,
    src: &'a str,
}

impl<'a> Diags<'a> {
    pub fn new(src: &'a str) -> Self {
        Diags {
            items: Vec::new(),
            // Spans only place messages; a parser panic on odd input (cargo-fuzz found one
            // in toml_edit 0.23) must cost the line numbers, never the process.
            spans: std::panic::catch_unwind(|| toml_edit::Document::parse(src).ok())
                .ok()
                .flatten(),
            src,
        }
    }

    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, path.into(), message.into());
    }

    pub fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, path.into(), message.into());
    }

    /// Record an error whose byte offset the parser already knows (syntax errors).
    pub fn error_at(&mut self, offset: Option<usize>, message: impl Into<String>) {
        let line_col = offset.map(|o| line_col(self.src, o));
        self.items.push(Diagnostic {
            severity: Severity::Error,
            path: String::new(),
            message: message.into(),
            line_col,
        });
    }

    fn push(&mut self, severity: Severity, path: String, message: String) {
        let line_col = self.locate(&path).map(|offset| line_col(self.src, offset));
        self.items.push(Diagnostic {
            severity,
            path,
            message,
            line_col,
        });
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.items
    }

    /// Byte offset of the deepest item of `path` that exists in the document: a key that is
    /// present points at its key, a missing key points at the table that should hold it.
    fn locate(&self, path: &str) -> Option<usize> {
        let doc = self.spans.as_ref()?;
        let mut node = Node::Item(doc.as_item());
        let mut best = None;
        for seg in split_path(path) {
            match child(node, seg) {
                Some((next, span)) => {
                    best = span.or(best);
                    node = next;
                }
                None => break,
            }
        }
        best
    }
}

/// A place in the parsed document: array-of-tables elements are `Table`s and inline array
/// elements are `Value`s, not `Item`s, so the walk carries all three.
#[derive(Clone, Copy)]
enum Node<'d> {
    Item(&'d toml_edit::Item),
    Table(&'d toml_edit::Table),
    Value(&'d toml_edit::Value),
}

fn child<'d>(node: Node<'d>, seg: Seg<'_>) -> Option<(Node<'d>, Option<usize>)> {
    match seg {
        Seg::Key(k) => {
            let table: &dyn toml_edit::TableLike = match node {
                Node::Table(t) => t,
                Node::Item(it) => it.as_table_like()?,
                Node::Value(v) => v.as_inline_table()?,
            };
            let (key, item) = table.get_key_value(k)?;
            Some((Node::Item(item), key.span().map(|s| s.start)))
        }
        Seg::Index(i) => match node {
            Node::Item(toml_edit::Item::ArrayOfTables(a)) => {
                let t = a.get(i)?;
                Some((Node::Table(t), t.span().map(|s| s.start)))
            }
            Node::Item(toml_edit::Item::Value(toml_edit::Value::Array(a)))
            | Node::Value(toml_edit::Value::Array(a)) => {
                let v = a.get(i)?;
                Some((Node::Value(v), v.span().map(|s| s.start)))
            }
            _ => None,
        },
    }
}

#[derive(Clone, Copy)]
enum Seg<'p> {
    Key(&'p str),
    Index(usize),
}

/// Split `routes[3].match.query.q` into segments. Keys holding dots or brackets are written
/// quoted (`headers."x.y"`) and kept whole.
fn split_path(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => i += 1,
            b'[' => {
                let end = path[i..].find(']').map(|e| i + e).unwrap_or(b.len());
                if let Ok(n) = path[i + 1..end].parse() {
                    out.push(Seg::Index(n));
                }
                i = end + 1;
            }
            b'"' => {
                let end = path[i + 1..]
                    .find('"')
                    .map(|e| i + 1 + e)
                    .unwrap_or(b.len());
                out.push(Seg::Key(&path[i + 1..end.min(b.len())]));
                i = end + 1;
            }
            _ => {
                let end = path[i..].find(['.', '[']).map(|e| i + e).unwrap_or(b.len());
                out.push(Seg::Key(&path[i..end]));
                i = end;
            }
        }
    }
    out
}

/// 1-based line and column of a byte offset.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|p| offset - p).unwrap_or(offset + 1);
    (line, col)
}

/// Quote a map key for a path when it is not a bare TOML key.
pub fn key_seg(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        format!("\"{k}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_paths() {
        let src = "[server]\nlisten = \"x\"\n\n[[routes]]\nname = \"a\"\n\n[[routes]]\nname = \"b\"\npool = \"p\"\n[routes.match]\npath_prefix = \"/x\"\n";
        let d = Diags::new(src);
        assert_eq!(
            d.locate("server.listen").map(|o| line_col(src, o)),
            Some((2, 1))
        );
        assert_eq!(
            d.locate("routes[1].pool").map(|o| line_col(src, o)),
            Some((9, 1))
        );
        assert_eq!(
            d.locate("routes[1].match.path_prefix")
                .map(|o| line_col(src, o)),
            Some((11, 1))
        );
    }

    #[test]
    fn splits_quoted() {
        let segs = split_path("routes[2].match.headers.\"x.y\".regex");
        assert_eq!(segs.len(), 6);
        assert!(matches!(segs[4], Seg::Key("x.y")));
    }
}
