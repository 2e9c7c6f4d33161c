//! What one check found, and its JSON line on stdout: {"check", "ok", "skipped", "detail"}.

use serde_json::json;

/// A check that ran to its end (passed) or that this client cannot run (skipped).
pub enum Outcome {
    Passed(String),
    Skipped(String),
}

/// A check's result: an `Err` carries why it failed.
pub type CheckResult = Result<Outcome, String>;

/// Prints the check's JSON line; returns false only when it failed.
pub fn print_line(check: &str, result: &CheckResult, elapsed_ms: u128) -> bool {
    let (ok, skipped, detail) = match result {
        Ok(Outcome::Passed(detail)) => (true, false, detail.as_str()),
        Ok(Outcome::Skipped(reason)) => (true, true, reason.as_str()),
        Err(reason) => (false, false, reason.as_str()),
    };
    let line = json!({
        "check": check,
        "ok": ok,
        "skipped": skipped,
        "detail": detail,
        "elapsed_ms": elapsed_ms as u64,
    });
    println!("{line}");
    ok
}

/// Turns a failed comparison into the check's error.
pub fn ensure(condition: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(what())
    }
}
