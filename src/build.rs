//! Build script (Cargo.toml `build`). The migrations in `sql/` are embedded at compile time: a new or edited
//! file must rebuild the crate, which cargo does not know by itself.
fn main() {
    println!("cargo:rerun-if-changed=sql");
}
