//! The macros' passing cases (`tests/ui/pass/`), compiled as modules of this test crate: if one
//! stops compiling, the test build fails. trybuild (`macros_ui.rs`) then checks only the
//! failing cases, with `cargo check`, instead of building every dependency a second time.

#[allow(dead_code)]
#[path = "ui/pass/usage.rs"]
mod usage;

#[allow(dead_code)]
#[path = "ui/pass/derive_usage.rs"]
mod derive_usage;
