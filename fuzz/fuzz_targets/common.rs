//! What the harnesses share besides `bindery::fuzzing`, which holds the target bodies.

/// The image and audio decoders catch panics raised inside third-party decoder crates and report
/// them as decode errors (that is their contract), but libFuzzer's panic hook aborts on every
/// panic, caught or not. This hook lets panics located in registry crates unwind to that catch
/// and still aborts on any panic raised in bindery's own code.
pub fn crash_only_on_own_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let third_party = info.location().is_some_and(|l| l.file().contains("/.cargo/registry/"));
            if !third_party {
                fuzzer_hook(info);
            }
        }));
    });
}
