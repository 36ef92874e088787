//! External inputs of a simulation, step by step: zero, a constant, Poisson spike
//! trains, or an array of values (`snnc run --input`, the Python module's `inputs=`).

/// Where the values of an external input come from, step by step.
#[derive(Clone, Debug)]
pub enum InputSource {
    Zero,
    Const(f64),
    /// Independent Poisson spike trains with this rate (Hz).
    Poisson(f64),
    /// (T, size) values, the same for every batch element, or (T, batch * size); 0
    /// after the last row.
    Array(ndarray::Array2<f64>),
}

impl InputSource {
    pub fn fill<T: snnc_runtime::scalar::Float>(&self, buf: &mut [T], step: u64, dt: f64, rng: &snnc_runtime::rng::Rng, stream: u32) {
        match self {
            InputSource::Zero => buf.fill(T::default()),
            InputSource::Const(v) => buf.fill(T::from_f64(*v)),
            InputSource::Poisson(rate) => {
                let p = rate * dt;
                for (j, b) in buf.iter_mut().enumerate() {
                    let u = rng.uniform(stream, (step << 24) ^ j as u64, 0);
                    *b = T::from_f64(if u <= p { 1.0 } else { 0.0 });
                }
            }
            InputSource::Array(a) => {
                let n = a.ncols();
                for (j, b) in buf.iter_mut().enumerate() {
                    *b = T::from_f64(if (step as usize) < a.nrows() { a[[step as usize, j % n]] } else { 0.0 });
                }
            }
        }
    }
}

pub fn parse_input(spec: &str, inputs: &[(String, usize)]) -> Result<(usize, InputSource), String> {
    let (name, source) = spec.split_once('=').ok_or("expected NAME=SOURCE")?;
    let i = inputs.iter().position(|(n, _)| n == name).ok_or_else(|| {
        let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
        format!("the network has no input `{name}` (inputs: {})", names.join(", "))
    })?;
    let size = inputs[i].1;
    if let Some(rate) = source.strip_prefix("poisson:") {
        let r = rate.trim();
        let split = r.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(r.len());
        let v: f64 = r[..split].trim().parse().map_err(|_| format!("`{r}` is not a rate"))?;
        let scale = match r[split..].trim() {
            "" | "Hz" => 1.0,
            "kHz" => 1e3,
            u => return Err(format!("unknown rate unit `{u}` (Hz, kHz)")),
        };
        return Ok((i, InputSource::Poisson(v * scale)));
    }
    if let Some(v) = source.strip_prefix("const:") {
        return Ok((i, InputSource::Const(v.trim().parse().map_err(|_| format!("`{v}` is not a number"))?)));
    }
    let a: ndarray::Array2<f64> = match ndarray_npy::read_npy::<_, ndarray::Array2<f64>>(source) {
        Ok(a) => a,
        Err(_) => ndarray_npy::read_npy::<_, ndarray::Array2<f32>>(source)
            .map(|a| a.mapv(f64::from))
            .map_err(|e| format!("cannot read `{source}` as a (T, {size}) float array: {e}"))?,
    };
    if a.ncols() != size {
        return Err(format!("`{source}` has {} columns, input `{name}` has {size} neurons", a.ncols()));
    }
    snnc_runtime::train::dataset::check_finite(a.view(), std::path::Path::new(source), name).map_err(|e| e.to_string())?;
    Ok((i, InputSource::Array(a)))
}


/// The external inputs of a network during one run: each input's source and the buffer
/// it fills before every step.
pub struct Drive<T> {
    sources: Vec<InputSource>,
    buffers: Vec<Vec<T>>,
    rng: snnc_runtime::rng::Rng,
    /// The network's step when the run began: arrays are read from their first row then;
    /// Poisson trains are drawn by the network's own step, so runs that follow one another
    /// do not repeat them.
    start: u64,
}

impl<T: snnc_runtime::scalar::Float> Drive<T> {
    /// `sources`: one per input of `network` (in its order).
    pub fn new(network: &snnc_runtime::network::Network<T>, sources: Vec<InputSource>) -> Drive<T> {
        let buffers = network.inputs.iter().map(|(_, n)| vec![T::default(); n * network.batch]).collect();
        let rng = snnc_runtime::rng::Rng::new(network.seed ^ 0x1A2B_3C4D);
        Drive { sources, buffers, rng, start: network.step_index }
    }

    /// The values of every input for network step `step` (time step `dt`).
    pub fn fill(&mut self, step: u64, dt: f64) -> Vec<&[T]> {
        let mut buffers = std::mem::take(&mut self.buffers);
        self.fill_into(step, dt, &mut buffers);
        self.buffers = buffers;
        self.buffers.iter().map(|v| v.as_slice()).collect()
    }

    /// [`Drive::fill`] into the caller's buffers (`x[i]`: input `i`, batch x size).
    pub fn fill_into(&self, step: u64, dt: f64, x: &mut [Vec<T>]) {
        for (i, (src, buf)) in self.sources.iter().zip(x.iter_mut()).enumerate() {
            let row = if matches!(src, InputSource::Array(_)) { step - self.start } else { step };
            src.fill(buf, row, dt, &self.rng, i as u32);
        }
    }
}
