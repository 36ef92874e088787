//! Partitioned simulation without MPI: K parts of a network, each built for its rank,
//! stepped together on K threads that exchange through shared memory (the collective
//! calls `mpirun -np K snnc run` makes through MPI, `tests/all/mpi.rs`), give the spikes
//! and states of the whole network stepped alone, bit for bit.
use crate::common::program;
use snnc_runtime::error::RuntimeError;
use snnc_runtime::kernels::{InterpFactory, JitFactory, KernelFactory};
use snnc_runtime::network::{Network, Options};
use crate::common::Threads;
use snnc_runtime::partition::{Exchange, share};
use snnc_runtime::scalar::Float;

/// Every step's spike lists and the final states.
type Run<T> = (Vec<Vec<Vec<Vec<u32>>>>, Vec<Vec<Vec<T>>>);

/// `steps` steps of `net` with inputs that change from step to step (element j is 1
/// where (t + j) % 3 == 0), stepped alone or as part `ex` of a partitioned network.
fn run<T: Float>(net: &mut Network<T>, steps: usize, ex: Option<&dyn Exchange>) -> Run<T> {
    let mut spikes = Vec::new();
    for t in 0..steps {
        let xs: Vec<Vec<T>> = net.inputs.iter().map(|(_, n)| (0..n * net.batch).map(|j| T::from_f64(f64::from(u8::from((t + j) % 3 == 0)))).collect()).collect();
        let ext: Vec<&[T]> = xs.iter().map(|v| v.as_slice()).collect();
        match ex {
            Some(ex) => net.step_exchanging(&ext, ex).unwrap(),
            None => net.step(&ext).unwrap(),
        }
        spikes.push(net.pops.iter().map(|p| p.active().to_vec()).collect());
    }
    if let Some(ex) = ex {
        net.gather_states(ex);
    }
    (spikes, net.pops.iter().map(|p| p.states.clone()).collect())
}

/// The runs of `size` parts of the network `build` makes, each on its own thread with
/// `threads` threads of its own.
fn run_parts<T: Float>(build: &(dyn Fn() -> Network<T> + Sync), size: usize, threads: usize, steps: usize) -> Vec<Run<T>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = Threads::world(size)
            .into_iter()
            .map(|ex| {
                s.spawn(move || {
                    let mut net = build();
                    net.partition(ex.rank, size).unwrap();
                    net.set_threads(threads).unwrap();
                    run(&mut net, steps, Some(&ex))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

fn assert_same<T: Float>(whole: &Run<T>, parts: &[Run<T>], what: &str) {
    for (r, part) in parts.iter().enumerate() {
        for (t, (a, b)) in whole.0.iter().zip(&part.0).enumerate() {
            assert_eq!(a, b, "{what}: rank {r} of {}: spikes at step {t}", parts.len());
        }
        assert!(whole.1 == part.1, "{what}: rank {r} of {}: final states differ", parts.len());
    }
}

#[test]
fn a_partitioned_coba_network_equals_the_whole_one() {
    // The COBA benchmark (4000 neurons, sparse E/I projections into both), JIT f32, 1000
    // steps: every rank sees the spikes of the whole network at every step, and its
    // states gathered are the whole network's, bit for bit, for 2 and 3 ranks (one with
    // 2 threads of its own).
    let p = program(include_str!("../../../examples/coba.snn"));
    let o = Options { seed: 3, ..Options::default() };
    let build = || Network::<f32>::build(&p, &p.networks[0], &o, &JitFactory).unwrap();
    let whole = run(&mut build(), 1000, None);
    let total: usize = whole.0.iter().flatten().flatten().map(Vec::len).sum();
    assert!(total > 5000, "the network fires ({total} spikes)");
    for (size, threads) in [(2, 1), (3, 2)] {
        assert_same(&whole, &run_parts(&build, size, threads, 1000), "COBA");
    }
}

#[test]
fn a_partitioned_network_with_delays_noise_inputs_readouts_and_batches_equals_the_whole_one() {
    // Delays (one per projection, and one a synapse), per-neuron noise, external inputs,
    // dense, one-to-one and sparse projections, a readout and a batch of 3, in f64
    // through the interpreter and the JIT; populations of 20 to 30 neurons, so that a
    // rank of 3 has no neuron of some of them.
    let text = format!("{}\nnetwork delayed {{ dt = 1 ms\n input x: 20\n layer A = LIF[40] {{ tau = 20 ms }}\n connect x -> A.I sparse p = 0.5 weight 0.9 delay U(1 ms, 4 ms)\n connect A -> A.I sparse p = 0.2 weight 0.3 delay U(1 ms, 3 ms) }}", include_str!("../data/mixed_small.snn"));
    let p = program(&text);
    for net in 0..2 {
        let o = Options { seed: 5, batch: 3, ..Options::default() };
        for factory in [&InterpFactory as &'static dyn KernelFactory<f64>, &JitFactory] {
            let build = || Network::<f64>::build(&p, &p.networks[net], &o, factory).unwrap();
            let whole = run(&mut build(), 200, None);
            assert!(whole.0.iter().flatten().flatten().map(Vec::len).sum::<usize>() > 100);
            for size in [2, 3] {
                assert_same(&whole, &run_parts(&build, size, 1, 200), &format!("{} ({})", p.networks[net].name, factory.name()));
            }
        }
    }
}

#[test]
fn a_part_keeps_only_the_synapses_into_its_neurons() {
    let p = program(include_str!("../../../examples/coba.snn"));
    let build = || Network::<f32>::build(&p, &p.networks[0], &Options::default(), &JitFactory).unwrap();
    let whole = build();
    // The first projection: E -> E.
    let e_to_e = 0;
    assert_eq!(whole.projection(&whole.projections()[0].0).unwrap().2, 0);
    let stored = |n: &Network<f32>| n.sparse_weights(e_to_e).unwrap().1.len();
    let mut kept = 0;
    for rank in 0..2 {
        let mut part = build();
        part.partition(rank, 2).unwrap();
        let (_, col, _) = part.sparse_weights(e_to_e).unwrap();
        let mine = share(3200, rank, 2);
        assert!(col.iter().all(|&j| mine.contains(&(j as usize))), "rank {rank} keeps synapses into other ranks' neurons");
        kept += stored(&part);
    }
    assert_eq!(kept, stored(&whole), "the parts keep every synapse once");
}

#[test]
fn what_a_partition_cannot_run_is_refused_by_name() {
    let refused = |text: &str| -> String {
        let p = program(text);
        let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
        match net.partition(0, 2) {
            Err(RuntimeError::Build(m)) => m,
            r => panic!("not refused: {r:?}"),
        }
    };
    let stdp = refused(include_str!("../../../examples/song2000.snn"));
    assert!(stdp.starts_with("E0702: projection") && stdp.contains("is plastic"), "{stdp}");
    let graded = refused(&format!("{}\nnetwork g {{ layer a = GradedCell[10]\n layer b = GradedCell[10]\n connect a -> b.I dense }}", include_str!("../../../tests/data/graded.snn")));
    assert!(graded.starts_with("E0702: population `a` sends its `output y`"), "{graded}");
    let state = refused("import \"stdlib/lif.snn\"\nnetwork s { layer a = LIF[10]\n readout r = Linear[2]\n connect a.v -> r dense }");
    assert!(state.starts_with("E0702: projection") && state.contains("reads a state of `a`"), "{state}");
    // The GPU backend (here through its emulator) runs whole networks only.
    let p = program(include_str!("../data/mixed_small.snn"));
    let mut net = Network::<f32>::without_kernels(&p, &p.networks[0], &Options::default()).unwrap();
    net.partition(0, 2).unwrap();
    let gpu = snnc_runtime::gpu::GpuNetwork::new(net, snnc_runtime::gpu::EmuDevice::new(snnc_compiler::backend::ptx::Target::Sm80));
    let e = gpu.err().expect("refused").to_string();
    assert!(e.starts_with("E0702: network `mixed` is part 1 of 2"), "{e}");
    // A partitioned network steps only with the other parts.
    let p = program(include_str!("../data/mixed_small.snn"));
    let mut net = Network::<f64>::build(&p, &p.networks[0], &Options::default(), &InterpFactory).unwrap();
    net.partition(1, 2).unwrap();
    let x = vec![0.0; 20];
    let e = net.step(&[&x]).unwrap_err().to_string();
    assert!(e.contains("holds part 2 of 2 of its neurons"), "{e}");
}
