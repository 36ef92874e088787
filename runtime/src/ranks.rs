//! The ranks of an MPI launch (cargo feature `mpi`): started by `mpirun`, checked to be
//! launched alike, ended together when one fails. Shared by data-parallel training
//! (`train/ranks.rs`) and partitioned simulation (`partition.rs`, as its [`Exchange`]).

use crate::partition::Exchange;
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

/// MPI's universe when this process was started by an MPI launcher (`mpirun`: Open
/// MPI, MPICH and PMIx set these variables), else `None`: a plain `snnc train` stays one
/// process and never initialises MPI.
pub fn launched() -> Option<mpi::environment::Universe> {
    let under = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].iter().any(|v| std::env::var_os(v).is_some());
    if under { mpi::initialize() } else { None }
}

/// The ranks of an MPI launch.
pub struct Ranks {
    world: SimpleCommunicator,
    pub rank: usize,
    pub size: usize,
    /// This rank among the ranks on its machine (those that share its memory, MPI's
    /// `MPI_COMM_TYPE_SHARED`), and how many they are: what picks a rank's GPU.
    pub local_rank: usize,
    pub local_size: usize,
}

impl Ranks {
    /// The world of `universe` (from `mpi::initialize`). Collective: every rank makes it.
    pub fn new(universe: &mpi::environment::Universe) -> Ranks {
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let local = world.split_shared(rank as i32);
        let (local_rank, local_size) = (local.rank() as usize, local.size() as usize);
        Ranks { world, rank, size, local_rank, local_size }
    }

    /// This rank's share of a batch: (first element, count); see
    /// [`crate::train::ranks::share_of`].
    pub fn share(&self, batch: usize) -> Result<(usize, usize), crate::error::RuntimeError> {
        crate::train::ranks::share_of(batch, self.rank, self.size)
    }

    /// Sends this rank's standard output to /dev/null: rank 0 reports for the launch.
    pub fn silence_stdout(&self) {
        use std::os::fd::AsRawFd;
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            // SAFETY: dup2 onto descriptor 1 with a descriptor this function holds open;
            // Rust's stdout writes to descriptor 1 and stays valid.
            unsafe { libc::dup2(null.as_raw_fd(), 1) };
        }
    }
}

impl Exchange for Ranks {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    /// `v` summed over the ranks by MPI's all-reduce, in place.
    fn all_sum(&self, v: &mut [f64]) {
        let send = v.to_vec();
        self.world.all_reduce_into(&send[..], v, SystemOperation::sum());
    }
    fn all_gather(&self, local: &[u32]) -> Vec<Vec<u32>> {
        // The counts first, then every rank's words into one buffer.
        let mut counts = vec![0i32; self.size];
        self.world.all_gather_into(&(local.len() as i32), &mut counts[..]);
        let displs: Vec<i32> = counts.iter().scan(0, |at, c| Some(std::mem::replace(at, *at + c))).collect();
        let mut all = vec![0u32; counts.iter().map(|c| *c as usize).sum()];
        self.world.all_gather_varcount_into(local, &mut PartitionMut::new(&mut all[..], &counts[..], &displs[..]));
        counts.iter().zip(&displs).map(|(c, d)| all[*d as usize..(*d + *c) as usize].to_vec()).collect()
    }
    fn abort(&self, why: &dyn std::fmt::Display) -> ! {
        eprintln!("error (rank {} of {}): {why}", self.rank, self.size);
        self.world.abort(1)
    }
}
