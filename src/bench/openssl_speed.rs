//! `openssl speed rsa2048` run as a subprocess and parsed: the machine's
//! own reference rate for the RSA private-key (sign) and public-key
//! (verify) operations, to divide blindpass's figures by.

use std::process::Command;

use serde::Serialize;

/// What `openssl speed` reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OpensslSpeed {
    /// Processes (`-multi`); 1 means a single process.
    pub processes: usize,
    /// Seconds per operation kind (`-seconds`).
    pub seconds: u32,
    /// RSA-2048 signatures per second, all processes together.
    pub sign_per_s: f64,
    /// RSA-2048 verifications per second, all processes together.
    pub verify_per_s: f64,
}

/// Runs `openssl speed -seconds S [-multi P] rsa2048`. `Ok(None)` when the
/// `openssl` program is not installed; `Err` when it ran but its output
/// could not be read.
pub fn run(processes: usize, seconds: u32) -> Result<Option<OpensslSpeed>, String> {
    let mut command = Command::new("openssl");
    command
        .arg("speed")
        .arg("-seconds")
        .arg(seconds.to_string());
    if processes > 1 {
        command.arg("-multi").arg(processes.to_string());
    }
    command.arg("rsa2048");
    let output = match command.output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("running openssl speed: {e}")),
    };
    if !output.status.success() {
        return Err(format!("openssl speed exited with {}", output.status));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let (sign_per_s, verify_per_s) = parse(&text)
        .ok_or_else(|| "could not find the rsa 2048 line in openssl speed's output".to_owned())?;
    Ok(Some(OpensslSpeed {
        processes: processes.max(1),
        seconds,
        sign_per_s,
        verify_per_s,
    }))
}

/// `(sign/s, verify/s)` from the summary table:
///
/// ```text
///                   sign    verify    sign/s verify/s
/// rsa 2048 bits 0.000329s 0.000032s   3042.0  31410.4
/// ```
///
/// Columns are found by their header, so tables with more columns (some
/// OpenSSL versions add encrypt/decrypt) parse too.
pub fn parse(text: &str) -> Option<(f64, f64)> {
    let lines: Vec<&str> = text.lines().collect();
    let row = lines.iter().rposition(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        words.len() > 3 && words[0] == "rsa" && words[1] == "2048" && words[2] == "bits"
    })?;
    let header = lines[..row]
        .iter()
        .rev()
        .find(|l| l.split_whitespace().any(|w| w == "sign/s"))?;
    let columns: Vec<&str> = header.split_whitespace().collect();
    let values: Vec<&str> = lines[row].split_whitespace().skip(3).collect();
    if columns.len() != values.len() {
        return None;
    }
    let column = |name: &str| -> Option<f64> {
        let i = columns.iter().position(|c| *c == name)?;
        values.get(i)?.parse().ok()
    };
    Some((column("sign/s")?, column("verify/s")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openssl_3_output() {
        let text = "Doing 2048 bits private rsa's for 3s: 5289 2048 bits private RSA's in 3.00s\n\
            version: 3.0.19\n\
            options: bn(64,64)\n\
            \x20                 sign    verify    sign/s verify/s\n\
            rsa 2048 bits 0.000329s 0.000032s   3042.0  31410.4\n";
        assert_eq!(parse(text), Some((3042.0, 31410.4)));
    }

    #[test]
    fn parses_tables_with_more_columns() {
        let text = "                  sign    verify    encrypt   decrypt   sign/s verify/s  encr./s  decr./s\n\
            rsa  2048 bits 0.000567s 0.000017s 0.000017s 0.000578s   1763.0  59523.8  58823.5   1730.1\n";
        assert_eq!(parse(text), Some((1763.0, 59523.8)));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("rsa 2048 bits 1 2\n"), None);
        assert_eq!(parse("  sign/s verify/s\nrsa 2048 bits x y\n"), None);
    }
}
