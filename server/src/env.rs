//! The core's environment on a real machine: the system clock and OS randomness.

use std::time::{SystemTime, UNIX_EPOCH};

use berth::registry::Env;

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemEnv;

impl SystemEnv {
    pub fn new() -> Self {
        SystemEnv
    }
}

impl Env for SystemEnv {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// 128 random bits as 32 hex digits: unguessable, and of the alphabet the core expects.
    fn new_id(&self) -> String {
        let mut bytes = [0u8; 16];
        // Without the OS random source there is no safe id to hand out; Linux never fails here.
        getrandom::fill(&mut bytes).expect("the OS random source failed");
        hex(&bytes)
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
