// rust-embed includes the files when this crate compiles; a file added to or removed
// from `assets/` must make it compile again.
fn main() {
    println!("cargo:rerun-if-changed=assets");
}
