//! Log levels changed while the process runs (Block Storage's `set-log`
//! and `get-log`, 3.32). `main` installs the function that swaps the log
//! filter; without one (tests, embedded use) the levels are only recorded.
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

type Apply = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

struct Ctl {
    /// The filter the process started with (`info`, `ferro_api=debug,info`...).
    base: String,
    apply: Apply,
}

static CTL: OnceLock<Ctl> = OnceLock::new();
static LEVELS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// Called once by the binary with its starting filter and a function that
/// installs a new filter from directives (`target=level,...`).
pub fn install(
    base: impl Into<String>,
    apply: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
) {
    let _ = CTL.set(Ctl {
        base: base.into(),
        apply: Box::new(apply),
    });
}

/// Cinder's level names (any case) to ours; `None` for an unknown one.
fn normalise(level: &str) -> Option<&'static str> {
    Some(match level.to_ascii_uppercase().as_str() {
        "TRACE" => "TRACE",
        "DEBUG" => "DEBUG",
        "INFO" => "INFO",
        "WARN" | "WARNING" => "WARNING",
        "ERROR" | "CRITICAL" | "FATAL" => "ERROR",
        "OFF" => "OFF",
        _ => return None,
    })
}

fn directive(level: &str) -> &'static str {
    match level {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "WARNING" => "warn",
        "ERROR" => "error",
        "OFF" => "off",
        _ => "info",
    }
}

/// The default level of the starting filter (its directive without a target).
fn base_level() -> String {
    let base = CTL.get().map(|c| c.base.as_str()).unwrap_or("info");
    base.split(',')
        .map(str::trim)
        .find(|d| !d.is_empty() && !d.contains('='))
        .and_then(normalise)
        .unwrap_or("INFO")
        .to_string()
}

/// Sets `target` (a log target such as `ferro_volume::flows`; empty for
/// every target) to `level` and applies the new filter.
pub fn set(target: &str, level: &str) -> Result<(), String> {
    let lvl = normalise(level).ok_or_else(|| {
        format!("Invalid log level {level}: expected DEBUG, INFO, WARNING or ERROR.")
    })?;
    let mut m = LEVELS.lock().map_err(|e| e.to_string())?;
    // Built from a copy: only a filter that applies is kept.
    let mut next = m.clone();
    next.insert(target.to_string(), lvl.to_string());
    let directives = {
        let m = &next;
        let mut d: Vec<String> = Vec::new();
        match m.get("") {
            Some(all) => d.push(directive(all).to_string()),
            None => d.push(
                CTL.get()
                    .map(|c| c.base.clone())
                    .unwrap_or_else(|| "info".into()),
            ),
        }
        d.extend(
            m.iter()
                .filter(|(k, _)| !k.is_empty())
                .map(|(k, v)| format!("{k}={}", directive(v))),
        );
        d.join(",")
    };
    if let Some(c) = CTL.get() {
        (c.apply)(&directives)?;
    }
    *m = next;
    Ok(())
}

/// The levels of `prefix` and the targets under it that were set; the
/// prefix itself shows the level it inherits when it was not set.
pub fn get(prefix: &str) -> BTreeMap<String, String> {
    let m = match LEVELS.lock() {
        Ok(m) => m.clone(),
        Err(_) => BTreeMap::new(),
    };
    let mut out: BTreeMap<String, String> = m
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !out.contains_key(prefix) {
        // The closest set ancestor, else the default.
        let inherited = m
            .iter()
            .filter(|(k, _)| prefix.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, v)| v.clone())
            .unwrap_or_else(base_level);
        out.insert(prefix.to_string(), inherited);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_recorded_and_inherited() {
        set("ferro_volume", "debug").unwrap();
        assert!(set("ferro_volume", "LOUD").is_err());
        let got = get("ferro_volume::flows");
        assert_eq!(
            got.get("ferro_volume::flows").map(String::as_str),
            Some("DEBUG")
        );
        set("ferro_volume::flows", "warn").unwrap();
        let got = get("ferro_volume");
        assert_eq!(got.get("ferro_volume").map(String::as_str), Some("DEBUG"));
        assert_eq!(
            got.get("ferro_volume::flows").map(String::as_str),
            Some("WARNING")
        );
    }
}
