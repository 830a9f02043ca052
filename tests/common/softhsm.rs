//! A SoftHSM2 token in a directory of its own, for the tests that keep the
//! master key in a PKCS#11 token: the configuration file that
//! `SOFTHSM2_CONF` names, a PIN file, and the token, initialised and found
//! by its label (slot ids change after initialisation).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's SoftHSM2 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Why SoftHSM2 cannot be used here, if it cannot.
pub fn missing() -> Option<String> {
    if !Path::new(MODULE).exists() {
        return Some(format!("{MODULE} is missing (Debian package softhsm2)"));
    }
    match Command::new("softhsm2-util").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("softhsm2-util is missing (Debian package softhsm2)".into()),
    }
}

/// Writes `dir/softhsm2.conf` (tokens under `dir/tokens`) and `dir/pin`,
/// and initialises a token labelled `label` with `pin` there. Returns the
/// configuration file, for `SOFTHSM2_CONF`.
pub fn init_token(dir: &Path, label: &str, pin: &str, so_pin: &str) -> PathBuf {
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("pin"), format!("{pin}\n")).unwrap();
    let init = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", label])
        .args(["--pin", pin, "--so-pin", so_pin])
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    conf
}

/// The `--master` URI of the token labelled `label`, its PIN in `dir/pin`.
pub fn uri(dir: &Path, label: &str) -> String {
    format!(
        "pkcs11:token={label}?module-path={MODULE}&pin-source={}",
        dir.join("pin").display()
    )
}
