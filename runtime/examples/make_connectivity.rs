//! Writes a random connectivity file for `connect A -> B from "FILE.npz"`: the loading
//! benchmark of docs/benchmarks.md and examples/connectome.snn's data.
//!
//! `cargo run --release -p snnc-runtime --example make_connectivity -- OUT.npz NEURONS SYNAPSES [SEED]`
//!
//! COO `pre` and `post` (int32, uniform over the neurons, unsorted), `weight` (float32,
//! a heavy-tailed synapse count per pair: 1 + floor(Pareto(alpha 1.5)), capped at 1000)
//! and `sign` (int8, one a neuron: a fifth inhibitory); and `tau_ms` (float32, one a
//! neuron, uniform in [15, 25)), a per-neuron param. Uncompressed, as `np.savez`.

use ndarray::Array1;
use ndarray_npy::NpzWriter;

#[path = "common/splitmix.rs"]
mod splitmix;
use splitmix::SplitMix;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err("usage: make_connectivity OUT.npz NEURONS SYNAPSES [SEED]".into());
    }
    let (out, n, s) = (&args[0], args[1].parse::<u64>()?, args[2].parse::<usize>()?);
    let mut rng = SplitMix(args.get(3).map(|a| a.parse()).transpose()?.unwrap_or(1));
    let pre: Array1<i32> = (0..s).map(|_| rng.below(n as usize) as i32).collect();
    let post: Array1<i32> = (0..s).map(|_| rng.below(n as usize) as i32).collect();
    let weight: Array1<f32> = (0..s).map(|_| (1.0 + rng.unit().powf(-1.0 / 1.5).floor()).min(1000.0) as f32).collect();
    let sign: Array1<i8> = (0..n).map(|_| if rng.below(5) == 0 { -1 } else { 1 }).collect();
    let tau: Array1<f32> = (0..n).map(|_| (15.0 + 10.0 * rng.unit()) as f32).collect();
    let mut w = NpzWriter::new(std::io::BufWriter::new(std::fs::File::create(out)?));
    w.add_array("pre", &pre)?;
    w.add_array("post", &post)?;
    w.add_array("weight", &weight)?;
    w.add_array("sign", &sign)?;
    w.add_array("tau_ms", &tau)?;
    w.finish()?;
    eprintln!("{out}: {n} neurons, {s} synapses");
    Ok(())
}
