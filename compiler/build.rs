// Embeds every `stdlib/*.snn` file in the compiler, so `import "lif.snn"` works from
// any directory without an installed stdlib.
use std::{env, fs, path::Path};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../stdlib");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".snn"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::from("/// The embedded standard library: (file name, source).\npub static STDLIB: &[(&str, &str)] = &[\n");
    for n in &names {
        let path = dir.join(n).canonicalize().expect("stdlib file");
        println!("cargo:rerun-if-changed={}", path.display());
        out.push_str(&format!("    ({n:?}, include_str!({:?})),\n", path.display().to_string()));
    }
    out.push_str("];\n");
    let dest = Path::new(&env::var("OUT_DIR").unwrap()).join("stdlib_files.rs");
    fs::write(dest, out).expect("write stdlib_files.rs");
}
