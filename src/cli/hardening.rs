//! Process hardening for `serve`: the server holds the master key, the live
//! period keys and, for the length of a request, residents' personal data.
//! A core dump would write all of it to disk, out of reach of any later
//! destruction, so `serve` turns core dumps off unless told otherwise.

use super::CliError;

/// Turns core dumps off for this process: `RLIMIT_CORE` 0 (soft and hard,
/// so it cannot be raised again) and `PR_SET_DUMPABLE` 0, which also stops
/// other processes of the same user from attaching with ptrace or reading
/// `/proc/PID/mem` (root still can). With `allow`, changes nothing, for
/// debugging a crash on a machine holding no real data.
///
/// Must run after any re-execution of the process: `execve` resets the
/// dumpable attribute.
pub(crate) fn protect_memory(allow: bool) -> anyhow::Result<&'static str> {
    if allow {
        return Ok("allowed by --allow-core-dumps (keys and personal data can reach a core file)");
    }
    disable_core_dumps().map_err(|e| {
        CliError::new(
            format!("could not turn core dumps off: {e}"),
            "core dumps would write keys and personal data to disk; pass --allow-core-dumps only to debug a crash on a machine holding no real data",
        )
    })?;
    Ok("off (RLIMIT_CORE 0, not dumpable)")
}

#[cfg(target_os = "linux")]
fn disable_core_dumps() -> std::io::Result<()> {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    let none = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    setrlimit(Resource::Core, none)?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn disable_core_dumps() -> std::io::Result<()> {
    Err(std::io::Error::other("not supported on this platform"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::{DumpableBehavior, Resource, dumpable_behavior, getrlimit};

    // One test, because it changes the test process for good: the hard
    // limit cannot be raised again.
    #[test]
    fn allowing_changes_nothing_and_protecting_turns_dumps_off() {
        let before = getrlimit(Resource::Core);
        assert!(protect_memory(true).unwrap().contains("allowed"));
        assert_eq!(getrlimit(Resource::Core), before);
        assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::Dumpable);

        assert!(protect_memory(false).unwrap().starts_with("off"));
        let now = getrlimit(Resource::Core);
        assert_eq!((now.current, now.maximum), (Some(0), Some(0)));
        assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
    }
}
