//! The config against the rest of the core, on real processes: what the
//! config's own queries promise is what the actions obey.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use leakwatch_core::Config;
use leakwatch_core::actions::kill::Guard;
use leakwatch_test_helper::Helper;
use std::path::Path;

/// Issue 13: two protect-list matchers existed, and the tested one
/// (`Config::is_protected`) was not the one the kill guard used
/// (`Guard::protect_match`), so a change to one would silently leave signals
/// following the other. Now the guard asks the config's `protect_match`: for a
/// real `lw-helper`, every way a pattern can match (the process name, argv[0]
/// whole, argv[0]'s last component) protects it in both, a pattern that does
/// not match protects it in neither, and the refusal names the pattern.
#[test]
fn the_kill_guard_refuses_exactly_what_the_config_protects() {
    let helper = Helper::spawn().unwrap();
    let mut probe = leakwatch_probe::Probe::new().unwrap();
    let table = probe.processes().unwrap();
    let info = probe.process(helper.pid()).unwrap();
    let argv0 = info.argv.first().cloned().expect("lw-helper's argv");
    assert!(argv0.contains('/'), "argv[0] is a path: {argv0}");
    let base = argv0.rsplit('/').next().unwrap().to_owned();

    let whole = format!("^{}$", regex::escape(&argv0));
    let by_base = format!("^{}$", regex::escape(&base));
    let by_name = format!("^{}$", regex::escape(&info.name));
    for (pattern, protected) in [
        (whole.as_str(), true),
        (by_base.as_str(), true),
        (by_name.as_str(), true),
        ("^not-lw-helper$", false),
    ] {
        let text = format!("protect = [{pattern:?}]\n");
        let config = Config::parse(&text, Path::new("/tmp/config.toml")).unwrap();
        assert_eq!(
            config.is_protected(&info.name, Some(&argv0)),
            protected,
            "config, pattern {pattern}"
        );
        let refusal = Guard::from_config(&config).refusal(&info, Some(&table));
        assert_eq!(refusal.is_some(), protected, "guard, pattern {pattern}: {refusal:?}");
        if let Some(reason) = refusal {
            assert!(reason.contains(pattern), "the refusal names the pattern: {reason}");
        }
    }
}
