//! Links the unwinder into every dynamic module built on these declarations:
//! the shipped one (`crates/dynamic-module`) and the bench's floor module
//! (`bench/dynamic-floor`), so that the floor is loaded as the module is.
//!
//! A module is built with `panic = "unwind"` so that each hook can catch an
//! unexpected panic and fail open (`crates/dynamic-module/src/ffi.rs`). On
//! glibc Linux, Rust's standard library takes its unwinder from
//! `libgcc_s.so.1`, which the distroless Envoy images (Envoy Gateway's
//! default proxy) do not have: the module would then fail to load there
//! unless that library were shipped beside it and found through
//! `LD_LIBRARY_PATH`.
//!
//! Instead, the link finds, ahead of the system's, a `libgcc_s.so` that is a
//! linker script naming GCC's static unwinder, `libgcc_eh.a` (with
//! `libgcc.a`), which is built position-independent for exactly this use
//! (`gcc -static-libgcc -shared`). A build script's link search path reaches
//! every crate that depends on its package, so the module's own link (and
//! its test executables') finds the script. The module then carries its own
//! copy of the unwinder, needs only glibc, and exports none of the
//! unwinder's symbols (a cdylib exports only its own hooks). Unwinding finds
//! the module's frames through `dl_iterate_phdr`, as it does for any shared
//! object. The Envoy tests check both: no `libgcc_s.so.1` among the module's
//! needed libraries, and a panic in each hook caught inside Envoy
//! (`crates/dynamic-module/tests/envoy_e2e.rs`).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os != "linux" || target_env != "gnu" {
        return Ok(());
    }
    let dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("cargo set no OUT_DIR")?)
        .join("static-unwinder");
    fs::create_dir_all(&dir)?;
    fs::write(
        dir.join("libgcc_s.so"),
        "/* The unwinder, linked statically (crates/dynamic-abi/build.rs). */\nINPUT ( -lgcc_eh -lgcc )\n",
    )?;
    println!("cargo:rustc-link-search=native={}", dir.display());
    Ok(())
}
