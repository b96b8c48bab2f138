//! The probe must not leak its own descriptors over many scans. Alone in its own
//! test binary, so no other test's helpers change this process's descriptor count.
#![cfg(target_os = "linux")]
// Helpers shared by the tests unwrap too: a panic is the failure report we want.
#![allow(clippy::unwrap_used)]

use leakwatch_probe::Probe;

fn own_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn many_scans_do_not_leak_descriptors() {
    let mut probe = Probe::new().unwrap();
    let own = std::process::id();
    let before = own_fd_count();
    for _ in 0..50 {
        probe.processes().unwrap();
        probe.fd_table(own).unwrap();
        probe.fd_count(own).unwrap();
    }
    assert_eq!(own_fd_count(), before);
}
