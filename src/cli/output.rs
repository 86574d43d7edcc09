//! Writing results to standard output.
//!
//! A closed pipe (`fjord topic list | head -1`) ends output quietly instead of failing.

use super::error::CliError;

/// Writes `text` to stdout and flushes it.
#[cfg(not(test))]
pub fn emit(text: &str) -> Result<(), CliError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let result = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
    quiet_broken_pipe(result)
}

/// In tests, output goes through `print!` so the test harness captures it.
#[cfg(test)]
pub fn emit(text: &str) -> Result<(), CliError> {
    print!("{text}");
    Ok(())
}

/// Maps a stdout write result, treating a closed pipe as success.
pub fn quiet_broken_pipe(result: std::io::Result<()>) -> Result<(), CliError> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::Stdout(e)),
        _ => Ok(()),
    }
}
