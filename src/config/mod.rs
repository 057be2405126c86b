//! Config loading: read a file, validate it fully (see `validate.rs`), and hand back either
//! a checked `Config` plus warnings, or every diagnostic found. Used by `levee check`, by
//! startup, and (later) by reload, so all three refuse exactly the same files.

mod adaptive;
mod cache;
pub mod diag;
mod groups;
pub mod model;
mod protection;
mod routes;
mod schedules;
pub mod schema;
pub mod units;
mod validate;

pub use diag::{Diagnostic, Severity};
pub use model::*;
pub use routes::{shadows, NO_ROUTE};

use std::path::Path;

/// A config that passed validation, with the warnings it raised.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

/// What identifies one version of a config file: modification time, size and inode (an
/// editor that writes a new file and renames it changes the inode even within one tick of
/// the filesystem's coarse clock).
pub type FileStamp = (std::time::SystemTime, u64, u64);

/// The file's stamp now; `None` if it cannot be read.
pub fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Load and validate a config file. Relative paths inside resolve against its folder.
pub fn load_file(path: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    // Taken before the read: a save that lands during or after it then differs from what
    // the running config records, and the file watch picks it up.
    let stamp = file_stamp(path);
    let src = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic {
            severity: Severity::Error,
            path: String::new(),
            message: format!("cannot read config {}: {e}", path.display()),
            line_col: None,
        }]
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let mut loaded = load_str(&src, base)?;
    loaded.config.source = Some(path.to_path_buf());
    loaded.config.stamp = stamp;
    Ok(loaded)
}

/// Validate config text; `base_dir` resolves relative file paths.
pub fn load_str(src: &str, base_dir: &Path) -> Result<Loaded, Vec<Diagnostic>> {
    let mut d = diag::Diags::new(src);
    let config = validate::validate(src, base_dir, &mut d);
    let diags = d.into_vec();
    match config {
        Some(config) if !diags.iter().any(|x| x.severity == Severity::Error) => Ok(Loaded {
            config,
            warnings: diags,
        }),
        _ => Err(diags),
    }
}
