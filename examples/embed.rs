//! Embedding snnc in a Rust program: load a `.snn` file, build a network, feed input
//! step by step from Rust, and read the spikes back.
//!
//! `cargo run --release --example embed`
use snnc::compiler::SourceMap;
use snnc::compiler::sema::{LoadOptions, check_path};
use snnc::runtime::kernels::InterpFactory;
use snnc::runtime::network::{Network, Options};

// Optional: buffers start on cache lines, as in the `snnc` binary (faster vector kernels
// and threads that share no line: snnc_runtime::alloc). Results do not depend on it.
#[global_allocator]
static ALLOC: snnc::runtime::alloc::CacheAligned = snnc::runtime::alloc::CacheAligned;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Compile: parse, check names and units. Diagnostics render like `snnc check`.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/embed.snn");
    let mut sources = SourceMap::new();
    let (program, diags) = check_path(&path, &LoadOptions::default(), &mut sources);
    if diags.iter().any(|d| d.is_error()) {
        eprint!("{}", snnc::compiler::diag::render_all(&diags, &sources));
        return Err("the model has errors".into());
    }
    let def = program.network("feedforward").ok_or("no network `feedforward`")?;

    // 2. Instantiate: connectivity and initial values come from the seed.
    let mut net = Network::<f32>::build(&program, def, &Options { seed: 42, ..Options::default() }, &InterpFactory)?;
    let (name, size) = net.inputs[0].clone();
    println!("network {}: {} neurons, input `{name}` of size {size}", net.name, net.n_neurons());

    // 3. Drive it from Rust: a moving bump of input, one step at a time.
    let mut x = vec![0.0f32; size];
    for step in 0..200 {
        for (i, v) in x.iter_mut().enumerate() {
            let centre = (step as f32 / 10.0) % size as f32;
            *v = if (i as f32 - centre).abs() < 2.0 { 1.0 } else { 0.0 };
        }
        net.step(&[&x])?;
        // 4. Read spikes back: `spikes()` holds 0/1 per neuron for this step (read-only:
        //    spikes are driven in through inputs, as `x` is here).
        let fired: Vec<usize> = net.pops[0].spikes().iter().enumerate().filter(|(_, s)| **s > 0.0).map(|(i, _)| i).collect();
        if !fired.is_empty() && step % 20 == 0 {
            println!("t = {:5.1} ms: neurons {fired:?} fired", net.time() * 1e3);
        }
    }
    println!("total spikes: {}", net.pops[0].spike_count);
    Ok(())
}
