//! `A2A_AFFINITY_STRING_KERNEL` caps the string-skip kernel of a process on
//! x86-64. The choice is made once per process, so the test runs its own
//! binary again as a child with the variable set, and checks the kernel the
//! child reports and that its scanner still reads long escaped text.

#![cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
// Helpers outside #[test] functions are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use a2a_affinity_core::json::scan::{Event, Flow, Limits, Progress, Scalar, Scanner};
use a2a_affinity_core::json::{string_kernel, STRING_KERNEL_ENV};

/// Set in the child, which then reports instead of spawning.
const CHILD: &str = "A2A_TEST_STRING_KERNEL_CHILD";
const TEST: &str = "the_environment_caps_the_kernel_of_the_process";

/// The value after 20 KiB of text with an escape every few bytes, found
/// by the scanner of this process.
fn value_after_long_text() -> String {
    let text = r#"a \"quoted\" line\n with \\ and \/ \t"#.repeat(600);
    let doc = format!(r#"{{"text":"{text}","contextId":"ctx-after"}}"#);
    let paths: &[&[&str]] = &[&["contextId"]];
    let mut scanner = Scanner::new(paths, Limits::default());
    let mut found = String::new();
    // Odd chunk sizes put escapes across every chunk boundary.
    for chunk in doc.as_bytes().chunks(997) {
        let progress = scanner.feed(chunk, &mut |event: Event<'_>| {
            if let Event::Scalar {
                value: Scalar::Str(s),
                ..
            } = event
            {
                found = s.to_string();
            }
            Flow::Continue
        });
        assert!(!matches!(progress, Progress::Failed(_)), "{progress:?}");
    }
    assert_eq!(scanner.finish(), Progress::Done);
    found
}

/// The kernel the CPU would run under `cap`, by name.
fn expected(cap: &str) -> &'static str {
    let avx512 = std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vbmi")
        && std::is_x86_feature_detected!("avx512vbmi2");
    let avx2 = std::is_x86_feature_detected!("avx2");
    match cap {
        "avx512" if avx512 => "avx512",
        "avx512" | "avx2" if avx2 => "avx2",
        _ => "sse2",
    }
}

#[test]
fn the_environment_caps_the_kernel_of_the_process() {
    if std::env::var_os(CHILD).is_some() {
        println!("kernel=[{}]", string_kernel());
        assert_eq!(value_after_long_text(), "ctx-after");
        return;
    }
    // This process, with the variable as the test runner left it.
    if std::env::var_os(STRING_KERNEL_ENV).is_none() {
        assert_eq!(string_kernel(), expected("avx512"));
    }
    assert_eq!(value_after_long_text(), "ctx-after");
    let cases = [
        ("sse2", format!("sse2 ({STRING_KERNEL_ENV}=sse2)")),
        (
            "avx2",
            format!("{} ({STRING_KERNEL_ENV}=avx2)", expected("avx2")),
        ),
        (
            "AVX512",
            format!("{} ({STRING_KERNEL_ENV}=AVX512)", expected("avx512")),
        ),
        (
            "fastest",
            format!(
                "{} ({STRING_KERNEL_ENV}=fastest is none of avx512, avx2, sse2: ignored)",
                expected("avx512")
            ),
        ),
    ];
    for (value, report) in cases {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env(STRING_KERNEL_ENV, value)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{value}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("kernel=[{report}]")),
            "{value}: want {report:?} in {stdout}"
        );
    }
}
